//! Grants: which capabilities each plugin name may hold, whatever its manifest claims. A
//! component is refused at load when it declares a capability its name is not granted, and
//! every effect is checked against what its name is granted when its batch runs (a revoked
//! capability stops within moments, also for a version loaded before). A plugin
//! named `coupon` can never touch balances.
//!
//! Grants are data: the five shop plugins have theirs built in, configuration adds or
//! replaces names (`SHOPMESH_PLUGIN_GRANTS`), and an operator's grant through the admin API
//! (`shop_plugin_grant`, shared by the fleet's database) wins over both. A name need not
//! exist yet to be granted. Every host keeps the table in memory, read again at start, after
//! its own changes, before it takes a version from the fleet's registry, and every few
//! seconds, so a grant made on one host holds on all.

use std::{collections::HashMap, sync::RwLock};

use poem_openapi::{Enum, Object};
use sqlx::Row;

use super::runtime::{capability_name, capability_named, Capability};
use crate::{ids::now_ms, store::Db, timestamp::Timestamp};

/// Where a name's grant comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum Source {
    /// Built in (the five shop plugins).
    BuiltIn,
    /// The host's configuration.
    Configured,
    /// An operator, through the admin API.
    Granted,
    /// Nothing: the name may hold no capability.
    None,
}

/// A plugin name's grant, as the admin API shows it.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct Grant {
    pub plugin: String,
    /// Capabilities, as the WIT spells them (`add-points`, …).
    pub capabilities: Vec<String>,
    pub source: Source,
    pub updated_at: Option<Timestamp>,
    pub updated_by: Option<String>,
}

/// A capability, as the API's requests name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "kebab-case")]
pub enum CapabilityName {
    RestoreStock,
    ReleaseCoupon,
    RefundBalance,
    AddPoints,
    AppendLog,
}

impl From<CapabilityName> for Capability {
    fn from(c: CapabilityName) -> Capability {
        match c {
            CapabilityName::RestoreStock => Capability::RestoreStock,
            CapabilityName::ReleaseCoupon => Capability::ReleaseCoupon,
            CapabilityName::RefundBalance => Capability::RefundBalance,
            CapabilityName::AddPoints => Capability::AddPoints,
            CapabilityName::AppendLog => Capability::AppendLog,
        }
    }
}

/// An operator's grant as stored.
#[derive(Debug, Clone)]
struct Stored {
    capabilities: Vec<Capability>,
    updated_at: i64,
    updated_by: String,
}

#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    /// Why the name cannot name a plugin ([`super::name_refusal`]).
    #[error("{0}")]
    BadName(String),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

pub struct Grants {
    built_in: HashMap<String, Vec<Capability>>,
    configured: HashMap<String, Vec<Capability>>,
    stored: RwLock<HashMap<String, Stored>>,
}

impl Grants {
    /// The built-in grants, with `configured` adding or replacing names.
    pub fn new(configured: HashMap<String, Vec<Capability>>) -> Grants {
        let built_in = [
            ("stock", Capability::RestoreStock),
            ("coupon", Capability::ReleaseCoupon),
            ("balance", Capability::RefundBalance),
            ("points", Capability::AddPoints),
            ("log", Capability::AppendLog),
        ]
        .into_iter()
        .map(|(name, c)| (name.to_owned(), vec![c]))
        .collect();
        Grants { built_in, configured, stored: RwLock::default() }
    }

    /// What `name` may hold now (read for every batch, so kept free of the API's strings).
    pub fn granted(&self, name: &str) -> Vec<Capability> {
        self.held(name).0
    }

    /// `name`'s grant and where it comes from.
    pub fn lookup(&self, name: &str) -> Grant {
        let (caps, source, set) = self.held(name);
        let (updated_at, updated_by) = set.map_or((None, None), |(at, by)| (Some(Timestamp(at)), Some(by)));
        let capabilities = caps.iter().map(|c| capability_name(*c).to_owned()).collect();
        Grant { plugin: name.to_owned(), capabilities, source, updated_at, updated_by }
    }

    /// What `name` holds, where that comes from, and when and by whom an operator set it.
    fn held(&self, name: &str) -> (Vec<Capability>, Source, Option<(i64, String)>) {
        if let Some(s) = self.stored.read().expect("grants lock").get(name) {
            return (s.capabilities.clone(), Source::Granted, Some((s.updated_at, s.updated_by.clone())));
        }
        match (self.configured.get(name), self.built_in.get(name)) {
            (Some(caps), _) => (caps.clone(), Source::Configured, None),
            (None, Some(caps)) => (caps.clone(), Source::BuiltIn, None),
            (None, None) => (Vec::new(), Source::None, None),
        }
    }

    /// Reads the operators' grants again.
    pub async fn refresh(&self, db: &Db) -> Result<(), sqlx::Error> {
        let rows = sqlx::query("SELECT plugin, capabilities, updated_at, updated_by FROM shop_plugin_grant").fetch_all(db.pool()).await?;
        let mut stored = HashMap::with_capacity(rows.len());
        for r in rows {
            let caps: String = r.try_get(1)?;
            let capabilities = caps.split(',').filter_map(|c| capability_named(c.trim())).collect();
            stored.insert(r.try_get(0)?, Stored { capabilities, updated_at: r.try_get(2)?, updated_by: r.try_get(3)? });
        }
        *self.stored.write().expect("grants lock") = stored;
        Ok(())
    }

    /// Grants `capabilities` (WIT names) to `name`, replacing its grant, for the fleet.
    pub async fn set(&self, db: &Db, name: &str, capabilities: &[CapabilityName], by: &str) -> Result<Grant, GrantError> {
        if let Some(why) = super::name_refusal(name) {
            return Err(GrantError::BadName(why));
        }
        let mut caps: Vec<Capability> = Vec::new();
        for c in capabilities.iter().map(|c| Capability::from(*c)) {
            if !caps.contains(&c) {
                caps.push(c);
            }
        }
        let text = caps.iter().map(|c| capability_name(*c)).collect::<Vec<_>>().join(",");
        db.execute(
            sqlx::query(
                "INSERT INTO shop_plugin_grant (plugin, capabilities, updated_at, updated_by) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (plugin) DO UPDATE SET capabilities = $2, updated_at = $3, updated_by = $4",
            )
            .bind(name)
            .bind(&text)
            .bind(now_ms())
            .bind(by),
        )
        .await?;
        self.refresh(db).await?;
        Ok(self.lookup(name))
    }

    /// Removes the operator's grant of `name`, for the fleet: the configured or built-in one
    /// holds again. Whether there was one to remove.
    pub async fn reset(&self, db: &Db, name: &str) -> Result<(Grant, bool), GrantError> {
        let done = db.execute(sqlx::query("DELETE FROM shop_plugin_grant WHERE plugin = $1").bind(name)).await?;
        self.refresh(db).await?;
        Ok((self.lookup(name), done.rows_affected() > 0))
    }
}

/// How often a host reads the grants again by itself.
const REFRESH: std::time::Duration = std::time::Duration::from_secs(2);

/// Reads the operators' grants every few seconds until shutdown.
pub async fn follow(host: std::sync::Arc<super::PluginHost>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    while !*shutdown.borrow() {
        tokio::select! {
            _ = tokio::time::sleep(REFRESH) => {}
            _ = shutdown.changed() => return,
        }
        if let Err(e) = host.refresh_grants().await {
            tracing::warn!(error = %e, "could not read the plugin grants");
        }
    }
}

/// Parses configured grants: `name=cap+cap,name=cap` (the environment's form).
pub fn parse_configured(text: &str) -> Result<HashMap<String, Vec<Capability>>, String> {
    let mut out = HashMap::new();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, caps) = pair.split_once('=').ok_or_else(|| format!("{pair:?} is not name=capability+capability"))?;
        let caps = caps
            .split('+')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(|c| capability_named(c).ok_or_else(|| format!("unknown capability {c:?} for plugin {name}")))
            .collect::<Result<Vec<_>, _>>()?;
        out.insert(name.trim().to_owned(), caps);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_grants_add_and_replace_built_in_ones() {
        let grants = Grants::new(parse_configured("vip-bonus=add-points, log=append-log+add-points").unwrap());
        assert_eq!(grants.granted("vip-bonus"), vec![Capability::AddPoints]);
        assert_eq!(grants.lookup("log").source, Source::Configured);
        assert_eq!(grants.granted("log"), vec![Capability::AppendLog, Capability::AddPoints]);
        assert_eq!(grants.granted("stock"), vec![Capability::RestoreStock]);
        assert_eq!(grants.lookup("nobody").source, Source::None);
        assert!(grants.granted("nobody").is_empty());
        assert!(parse_configured("x=fly").is_err());
        assert!(parse_configured("x").is_err());
    }
}
