//! Grants: which capabilities each plugin name may hold, whatever its manifest claims. A
//! component is refused at load when it declares a capability its name is not granted, and
//! every effect is checked against the grant again before it is applied. A plugin named
//! `coupon` can never touch balances.

use super::runtime::Capability;

/// The capabilities granted to plugin `name`: the five shop plugins' own, nothing for any
/// other name.
pub fn granted(name: &str) -> &'static [Capability] {
    match name {
        "stock" => &[Capability::RestoreStock],
        "coupon" => &[Capability::ReleaseCoupon],
        "balance" => &[Capability::RefundBalance],
        "points" => &[Capability::AddPoints],
        "log" => &[Capability::AppendLog],
        _ => &[],
    }
}
