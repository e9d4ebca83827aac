//! Checkout: the shop's rules for an order, checked before anything is written. The client
//! states the price, shipping fee and order amount it showed; they must match what the shop
//! computes now, and the coupon and balance must be the user's to spend.

use poem_openapi::Object;

use super::{coupons::Coupon, stock::Goods, users::User, Shop, ShopError};
use crate::{ids::Id, money::Money};

/// An order as the user submits it. The client states the price, shipping fee and order
/// amount it showed; they must match what the shop computes now: the goods amount is the
/// price times the number, shipping is free above 100.00 of goods and 10.00 otherwise, and
/// the order amount is the two together.
#[derive(Debug, Clone, Object)]
// The example leaves out what it does not set: null is refused (the schema is not nullable).
#[oai(example, skip_serializing_if_is_none)]
pub struct PlaceOrder {
    pub user_id: Id,
    pub goods_id: Id,
    /// Quantity, at least 1.
    pub goods_number: i64,
    /// Unit price the client showed.
    pub goods_price: Money,
    pub shipping_fee: Money,
    pub order_amount: Money,
    /// A coupon of this user to use, if any.
    pub coupon_id: Option<Id>,
    /// Balance to use (default 0).
    pub money_paid: Option<Money>,
    /// Where to ship it (required).
    #[oai(validator(min_length = 1, max_length = 500))]
    pub address: String,
    /// Who receives it (required).
    #[oai(validator(min_length = 1, max_length = 100))]
    pub consignee: String,
}


/// Orders above this amount ship free (the shop's rule).
const FREE_SHIPPING_ABOVE: Money = Money::from_cents(100_00);
const SHIPPING_FEE: Money = Money::from_cents(10_00);

/// What validation settled: the amounts the pre-order is saved with.
pub(crate) struct Plan {
    pub goods_amount: Money,
    pub shipping_fee: Money,
    pub order_amount: Money,
    pub coupon_paid: Money,
    pub money_paid: Money,
    pub pay_amount: Money,
}

/// The shop's shipping rule.
pub fn shipping_fee_for(goods_amount: Money) -> Money {
    if goods_amount > FREE_SHIPPING_ABOVE {
        Money::ZERO
    } else {
        SHIPPING_FEE
    }
}

impl Shop {
    /// Checks an order against current prices, stock, coupon and balance, and settles its
    /// amounts. Reads only: a rejected order leaves no trace.
    pub(crate) async fn check_out(&self, req: &PlaceOrder) -> Result<Plan, ShopError> {
        let goods: Goods = self.get(req.goods_id).await?;
        let user: User = self.get(req.user_id).await?;
        if req.goods_price != goods.goods_price {
            return Err(ShopError::GoodsPriceInvalid {
                current: goods.goods_price.to_string(),
                ordered: req.goods_price.to_string(),
            });
        }
        if req.goods_number <= 0 {
            return Err(ShopError::GoodsNumInvalid(req.goods_number));
        }
        if req.goods_number > goods.goods_number {
            return Err(ShopError::GoodsNumNotEnough {
                stock: goods.goods_number,
                wanted: req.goods_number,
            });
        }
        let goods_amount = goods
            .goods_price
            .checked_mul(req.goods_number)
            .ok_or_else(|| ShopError::RequestParameterInvalid("order amount too large".into()))?;
        let shipping_fee = shipping_fee_for(goods_amount);
        if req.shipping_fee != shipping_fee {
            return Err(ShopError::ShippingFeeInvalid {
                expected: shipping_fee.to_string(),
                given: req.shipping_fee.to_string(),
            });
        }
        // The original computed `orderAmount.add(shippingFee)` and threw the result away.
        let order_amount = goods_amount
            .checked_add(shipping_fee)
            .ok_or_else(|| ShopError::RequestParameterInvalid("order amount too large".into()))?;
        if req.order_amount != order_amount {
            return Err(ShopError::OrderAmountInvalid {
                expected: order_amount.to_string(),
                given: req.order_amount.to_string(),
            });
        }
        let coupon_paid = match req.coupon_id {
            None => Money::ZERO,
            Some(coupon_id) => {
                let coupon: Coupon = self.get(coupon_id).await?;
                if coupon.user_id != req.user_id {
                    return Err(ShopError::CouponNotOwned(coupon_id));
                }
                if coupon.is_used != 0 {
                    return Err(ShopError::CouponIsUsed(coupon_id));
                }
                coupon.coupon_price
            }
        };
        let money_paid = req.money_paid.unwrap_or(Money::ZERO);
        if money_paid.is_negative() {
            return Err(ShopError::MoneyPaidLessZero);
        }
        // Compared in cents: the original truncated through longValue().
        if money_paid > user.user_money {
            return Err(ShopError::MoneyPaidInvalid {
                wanted: money_paid.to_string(),
                balance: user.user_money.to_string(),
            });
        }
        let pay_amount = coupon_paid
            .checked_add(money_paid)
            .and_then(|discount| order_amount.checked_sub(discount))
            .filter(|p| !p.is_negative())
            .ok_or_else(|| ShopError::DiscountExceedsAmount {
                coupon: coupon_paid.to_string(),
                money: money_paid.to_string(),
                amount: order_amount.to_string(),
            })?;
        Ok(Plan { goods_amount, shipping_fee, order_amount, coupon_paid, money_paid, pay_amount })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipping_is_free_only_above_100() {
        assert_eq!(shipping_fee_for(Money::from_cents(100_00)), SHIPPING_FEE);
        assert_eq!(shipping_fee_for(Money::from_cents(100_01)), Money::ZERO);
        assert_eq!(shipping_fee_for(Money::from_cents(1)), SHIPPING_FEE);
    }
}
