"""Schemathesis hooks for the shop: what a schema cannot give a fuzzer.

- Every payment callback is signed (X-Shop-Signature over the exact bytes sent), so the
  callback's logic is fuzzed past the signature check; an unsigned one only ever meets 401.
- Every other schema-valid (positive) order, payment and callback is made real:
  an order of existing goods at their price, a payment of a confirmed order for its pay
  amount, a callback of an open payment for its amount. The rest stay as generated.

The test (tests/api/first_hour.rs) sets SHOPMESH_FUZZ_URL, SHOPMESH_FUZZ_TOKEN and
SHOPMESH_FUZZ_SECRET; the hooks create their own goods and user through the admin API.
"""

import hashlib
import hmac
import json
import os
import time
import urllib.request

import schemathesis
from schemathesis import GenerationMode

URL = os.environ["SHOPMESH_FUZZ_URL"].rstrip("/")
TOKEN = os.environ["SHOPMESH_FUZZ_TOKEN"]
SECRET = os.environ["SHOPMESH_FUZZ_SECRET"].encode()
PRICE = "150.00"
_state = {}


def _call(method, path, body=None, admin=False):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(URL + path, data=data, method=method)
    req.add_header("content-type", "application/json")
    if admin:
        req.add_header("authorization", "Bearer " + TOKEN)
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def _fixture():
    if "goods" not in _state:
        goods = _call("POST", "/api/admin/goods", {"goods_name": "fuzz", "goods_number": 1000000, "goods_price": PRICE}, admin=True)
        user = _call("POST", "/api/admin/users", {"user_name": "fuzz", "user_money": "0.00", "user_score": 0}, admin=True)
        _state.update(goods=goods["goods_id"], user=user["user_id"])
    return _state


def _order():
    f = _fixture()
    return {
        "user_id": f["user"], "goods_id": f["goods"], "goods_number": 1, "goods_price": PRICE,
        "shipping_fee": "0.00", "order_amount": PRICE, "address": "fuzz", "consignee": "fuzz",
    }


def _positive(case):
    """Every other schema-valid case (deterministic, like the run)."""
    meta = case.meta
    if meta is None or meta.generation.mode != GenerationMode.POSITIVE:
        return False
    _state["turn"] = not _state.get("turn", False)
    return _state["turn"]


def _sign(body):
    now = int(time.time())
    mac = hmac.new(SECRET, f"{now}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={now},v1={mac}"


def _real_order(case):
    case.body = _order()


def _real_payment(case):
    order = _call("POST", "/api/orders", _order())
    case.body = {"order_id": order["order_id"], "pay_amount": order["pay_amount"]}


def _real_callback(case):
    order = _call("POST", "/api/orders", _order())
    pay = _call("POST", "/api/payments", {"order_id": order["order_id"], "pay_amount": order["pay_amount"]})
    case.body = {"pay_id": pay["pay_id"], "pay_amount": pay["pay_amount"], "is_paid": 2}


REAL = {"/api/orders": _real_order, "/api/payments": _real_payment, "/api/payments/callback": _real_callback}


@schemathesis.hook
def before_call(ctx, case, kwargs):
    op = case.operation
    if op.method.upper() != "POST" or op.path not in REAL:
        return
    if _positive(case):
        REAL[op.path](case)
    if op.path == "/api/payments/callback":
        # Signed over the bytes schemathesis sends (json.dumps of the body).
        body = case.body
        if body is None or type(body).__name__ == "NotSet":
            raw = b""
        elif isinstance(body, (bytes, str)):
            raw = body if isinstance(body, bytes) else body.encode()
        else:
            raw = json.dumps(body).encode("utf-8")
        headers = dict(case.headers or {})
        headers["X-Shop-Signature"] = _sign(raw)
        case.headers = headers

