//! stock: when an order is cancelled, give back the stock its stock step took.
#![cfg_attr(target_arch = "wasm32", no_std)]

use shopmesh_guest::*;

plugin! {
    pub struct StockRule = "stock" @ "1.0.0", on ["shop.order.cancel"], may [RestoreStock];
    fn handle(event, reads) {
        give_back(event, reads, Step::Stock, |c, quantity| Effect::RestoreStock(RestoreStock { order_id: c.order_id, goods_id: c.goods_id, quantity }))
    }
}
