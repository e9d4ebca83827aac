"""The operator console in a real headless Chromium (Debian's package, driven by Playwright).

Run by tests/api/console.rs against a real host it prepared: the five plugins loaded,
paid orders (points applied by 1.0.0), one more whose event is a dead letter of points (a
rogue version trapped; 1.0.0 active again), and one cancelled order with stock, coupon and
balance.
Everything is done through the pages, as an operator would; each step checks what the page
shows, and a screenshot of every page is written to CONSOLE_SCREENSHOTS.

Environment: CONSOLE_URL, CONSOLE_TOKEN, CONSOLE_ORDER_ID (a cancelled order), CONSOLE_PAID_ORDER_ID,
CONSOLE_DEAD_LETTER_ID,
CONSOLE_PAY_EVENTS (pay-success events in the stream), CONSOLE_POINTS_V2 (path of points 2.0.0's component), CONSOLE_SCREENSHOTS, CHROMIUM.
"""

import http.server
import os
import re
import sys
import threading

from playwright.sync_api import expect, sync_playwright

URL = os.environ["CONSOLE_URL"]
TOKEN = os.environ["CONSOLE_TOKEN"]
ORDER_ID = os.environ["CONSOLE_ORDER_ID"]
PAID_ORDER_ID = os.environ["CONSOLE_PAID_ORDER_ID"]
DEAD_LETTER_ID = os.environ["CONSOLE_DEAD_LETTER_ID"]
PAY_EVENTS = int(os.environ["CONSOLE_PAY_EVENTS"])  # in the stream, each applied once by points 1.0.0
POINTS_V2 = os.environ["CONSOLE_POINTS_V2"]
SHOTS = os.environ["CONSOLE_SCREENSHOTS"]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
FIVE = ["stock", "coupon", "balance", "points", "log"]
PAGES = ["/console", "/console/plugins/points", "/console/dead-letters", "/console/replay",
         "/console/replay/1", "/console/orders", f"/console/orders/{ORDER_ID}", "/console/no-such-page"]

LOGIN = re.compile(r"/console/login(\?next=[^&]*)?$")

os.makedirs(SHOTS, exist_ok=True)
expect.set_options(timeout=20_000)


def step(name):
    print(f"-- {name}", flush=True)


def shot(page, name):
    page.screenshot(path=os.path.join(SHOTS, f"{name}.png"), full_page=True)


def api_status(page, method, path):
    """A fetch from the page's context (its cookies, no CSRF header): the HTTP status."""
    return page.evaluate("([m, p]) => fetch(p, {method: m}).then(r => r.status)", [method, path])


def serve_forgery(target):
    """A page on another origin that posts a form to the host as soon as it loads."""
    html = f"""<!doctype html><form id=f method=post action="{target}"><input name=x value=1></form>
<script>document.getElementById('f').submit()</script>""".encode()

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(html)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main():
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        ctx = browser.new_context(viewport={"width": 1280, "height": 860})
        page = ctx.new_page()
        page.on("dialog", lambda d: d.accept())  # every confirmation: yes
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))

        step("login: a page without a session goes to the login form; a wrong token is refused")
        page.goto(URL + "/console")
        expect(page).to_have_url(LOGIN)
        page.fill("input[name=token]", "not-the-token")
        page.click("button[type=submit]")
        expect(page.locator("#login-error")).to_have_text("admin token wrong")
        shot(page, "01-login")
        page.fill("input[name=token]", TOKEN)
        page.click("button[type=submit]")
        expect(page).to_have_url(re.compile(r"/console$"))
        cookie = next(c for c in ctx.cookies() if c["name"] == "shopmesh_console")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict", cookie
        assert TOKEN not in page.content(), "the token is not in the page"
        assert page.evaluate("() => JSON.stringify(localStorage) + document.cookie") == "{}", "nothing in localStorage or script-readable cookies"

        step("overview lists the five plugins with version, state and counters")
        for name in FIVE:
            row = page.locator(f"#plugin-table tr[data-plugin='{name}']")
            expect(row).to_contain_text("1.0.0")
            expect(row).to_contain_text("enabled")
        expect(page.locator("#rate-chart")).to_be_visible()
        # The fleet: this host runs the five at 1.0.0; the second host (it only takes orders) none.
        for name in FIVE:
            expect(page.locator(f"#host-table tr[data-host='worker-1'] [data-plugin='{name}']")).to_have_text(f"{name} 1.0.0")
        expect(page.locator("#host-table tr[data-host='worker-2']")).to_contain_text("no plugins")
        expect(page.locator("#outbox")).to_contain_text("Outbox backlog")
        expect(page.locator("#nats .big")).to_have_text("connected")
        shot(page, "02-overview")

        step("dead letters: the event's JSON, then redrive; the row shows it applied")
        page.click("header nav a[data-nav='dead-letters']")
        row = page.locator(f"#letter-table tr[data-id='{DEAD_LETTER_ID}']")
        expect(row).to_contain_text("points")
        expect(row).to_contain_text("0.0.1-rogue")
        expect(row.locator("td.status")).to_have_text("open")
        expect(page.locator("#count")).to_contain_text("1 open, 0 closed")
        row.locator("button.view").click()
        expect(page.locator("#event-json")).to_contain_text("shop.pay.success")
        expect(page.locator("#event-order")).to_have_attribute("href", re.compile(r"^/console/orders/\d+$"))
        shot(page, "03-dead-letters-open")
        row.locator("button.redrive").click()
        expect(row.locator("td.status")).to_have_text("redriven: applied")
        expect(row.locator("button.redrive")).to_have_count(0)
        shot(page, "04-dead-letters-redriven")

        step("dead letters: the closed ones on request; an order's timeline links its letter")
        page.reload()
        expect(page.locator("#count")).to_contain_text("0 open, 1 closed (1 not shown)")
        expect(row).to_have_count(0)
        page.click("#show-toggle")
        expect(row.locator("td.status")).to_have_text("redriven: applied")
        row.locator("button.view").click()
        page.click("#event-order")
        expect(page).to_have_url(re.compile(r"/console/orders/\d+$"))
        page.locator(f"#order-dead-letters a:text-is('{DEAD_LETTER_ID}')").click()
        expect(page.locator(f"#letter-table tr.selected[data-id='{DEAD_LETTER_ID}']")).to_have_count(1)
        expect(page.locator("#event-json")).to_contain_text("shop.pay.success")

        step("plugin page: stage points 2.0.0")
        page.goto(URL + "/console/plugins/points")
        expect(page.locator("#active-version")).to_have_text("1.0.0")
        page.set_input_files("#upload input[name=file]", POINTS_V2)
        page.select_option("#upload select[name=activate]", "false")
        page.click("#upload button[type=submit]")
        expect(page.locator("#versions tr[data-version='2.0.0']")).to_have_attribute("data-state", "staged")
        expect(page.locator("#active-version")).to_have_text("1.0.0")
        shot(page, "05-plugin-staged")

        step("replay page: bad input is answered by the API and starts nothing")
        page.goto(URL + "/console/replay?plugin=points")
        expect(page.locator("#replay-list")).to_be_visible()
        before = page.locator("#replay-list tbody tr").count()
        page.fill("#replay-form input[name=from_seq]", "9")
        page.fill("#replay-form input[name=to_seq]", "3")
        page.click("#replay-form button[type=submit]")
        expect(page.locator("#error")).to_contain_text("SHOP_REPLAY_RANGE_INVALID")
        page.reload()
        expect(page.locator("#replay-list")).to_be_visible()
        expect(page.locator("#replay-list tbody tr")).to_have_count(before)

        step("replay page: a dry-run of 2.0.0 runs to done and its diff shows changed events")
        page.select_option("#replay-form select[name=version]", "2.0.0")
        page.select_option("#replay-form select[name=mode]", "dry-run")
        page.click("#replay-form button[type=submit]")
        expect(page).to_have_url(re.compile(r"/console/replay/\d+$"))
        expect(page.locator("#replay-state")).to_have_attribute("data-state", "done")
        expect(page.locator("#progress-text")).to_contain_text("(100%)")
        assert page.evaluate("() => document.getElementById('bar').style.width") == "100%"
        changed = int(page.locator("#summary [data-outcome='changed'] .big").inner_text())
        assert changed == PAY_EVENTS, f"every payment (the redriven one too) changes: {changed} of {PAY_EVENTS}"
        expect(page.locator("#diff-table tr[data-outcome='changed']")).to_have_count(changed)
        first = page.locator("#diff-table tr[data-outcome='changed']").first
        expect(first).to_contain_text("add-points")
        expect(first).to_contain_text("points 150")
        expect(first).to_contain_text("points 300")
        # Where it changed is marked, on both sides: the points, not the order or the user.
        marked = first.locator("mark").all_inner_texts()
        assert marked == ["points 150", "points 300"], f"only the field that changed is marked: {marked}"
        page.select_option("#outcome", "same")
        expect(page.locator("#diff-table tbody")).to_contain_text("nothing here")
        page.select_option("#outcome", "changed")
        expect(page.locator("#diff-table tr[data-outcome='changed']")).to_have_count(changed)
        cards = page.locator("#summary .card").evaluate_all("cs => cs.map(c => c.dataset.outcome)")
        assert cards == ["same", "changed", "new", "failed", "regressed"], f"a dry-run's counts, in the CLI's order: {cards}"
        shot(page, "06-replay-diff")

        step("replay page: a slow one (max rate 1 ev/s) shows its progress live and can be cancelled")
        page.goto(URL + "/console/replay?plugin=points")
        # The list says what the last one found: a dry-run its changes.
        expect(page.locator("#replay-list tbody tr").first.locator("td.result")).to_contain_text(f"changed {changed}")
        page.select_option("#replay-form select[name=version]", "2.0.0")
        page.fill("#replay-form input[name=max_rate]", "1")
        page.click("#replay-form button[type=submit]")
        expect(page.locator("#replay-state")).to_have_attribute("data-state", "running")
        expect(page.locator("#progress-text")).to_contain_text(f" of {PAY_EVENTS} events")
        page.click("#cancel")
        expect(page.locator("#replay-state")).to_have_attribute("data-state", "cancelled")
        expect(page.locator("#cancel")).to_have_count(0)

        step("replay page: the cancelled one goes on from the sequence after its last, as a new replay")
        cancelled_url = page.url
        expect(page.locator("#go-on")).to_contain_text("Go on from ")
        page.click("#go-on")
        expect(page).not_to_have_url(cancelled_url)
        expect(page).to_have_url(re.compile(r"/console/replay/\d+$"))
        expect(page.locator("#replay-state")).to_have_attribute("data-state", "running")
        page.click("#cancel")
        expect(page.locator("#replay-state")).to_have_attribute("data-state", "cancelled")

        step("plugin page: activate 2.0.0, then roll back to 1.0.0")
        page.goto(URL + "/console/plugins/points")
        page.click("#versions button.activate[data-version='2.0.0']")
        expect(page.locator("#active-version")).to_have_text("2.0.0")
        expect(page.locator("#versions tr[data-version='1.0.0']")).to_have_attribute("data-state", "kept")
        expect(page.locator("#versions button.activate[data-version='1.0.0']")).to_have_text("Roll back to this")
        page.click("#versions button.activate[data-version='1.0.0']")
        expect(page.locator("#active-version")).to_have_text("1.0.0")
        expect(page.locator("#versions tr[data-version='2.0.0']")).to_have_attribute("data-state", "kept")
        expect(page.locator("#notice")).to_have_text("points 1.0.0 is active")
        shot(page, "07-plugin-rolled-back")
        # The rollback went through the fleet: the second host now runs points 1.0.0 too
        # (it answers the roll call every 5 s).
        page.goto(URL + "/console")
        expect(page.locator("#host-table tr[data-host='worker-2'] [data-plugin='points']")).to_have_text("points 1.0.0", timeout=30_000)

        step("order page: the cancelled order's timeline shows what each plugin gave back")
        page.goto(URL + "/console/orders")
        page.fill("#order-form input[name=order_id]", ORDER_ID)
        page.click("#order-form button[type=submit]")
        for s in ["stock", "coupon", "balance"]:
            expect(page.locator(f"#steps tr[data-step='{s}'][data-action='taken']")).to_have_count(1)
            expect(page.locator(f"#steps tr[data-step='{s}'][data-action='given-back']")).to_contain_text(f"{s}@1.0.0")
        expect(page.locator("#states li[data-state='cancelled']")).to_be_visible()
        for plugin, effect in [("stock", "restore-stock"), ("coupon", "release-coupon"), ("balance", "refund-balance")]:
            row = page.locator(f"#events tr[data-subject='shop.order.cancel'][data-plugin='{plugin}']")
            expect(row).to_contain_text("applied")
            expect(row).to_contain_text("1.0.0")
            expect(row).to_contain_text(effect)
        expect(page.locator("#events")).to_contain_text("shop.order.cancel")
        shot(page, "08-order-timeline")
        # A paid order's confirmation, which no version running here reads: the page says so
        # rather than "not handled yet"; its payment was handled.
        page.goto(URL + f"/console/orders/{PAID_ORDER_ID}")
        expect(page.locator("#events tr[data-subject='shop.order.confirmed']")).to_contain_text("no plugin here reads this subject")
        expect(page.locator("#events tr[data-subject='shop.pay.success'][data-plugin='points']")).to_contain_text("applied")

        step("errors are the API's messages, never a blank page")
        page.goto(URL + "/console/orders/1")
        expect(page.locator("#error")).to_contain_text("SHOP_ORDER_INVALID")
        page.goto(URL + "/console/plugins/nope")
        expect(page.locator("#error")).to_contain_text("no plugin nope")
        expect(page.locator("#page")).to_contain_text("Not on this host")
        # The guard has letters but no component: its page says what it is, and no error.
        page.goto(URL + "/console/plugins/shopmesh-guard")
        expect(page.locator("#guard")).to_contain_text("dead-lettered under this name")
        expect(page.locator("#error")).to_be_hidden()
        page.locator("#guard a").click()
        expect(page).to_have_url(URL + "/console/dead-letters?plugin=shopmesh-guard")
        shot(page, "09-error-shown")

        step("a forged cross-site POST is refused (same site, other origin: cookie sent, no CSRF token)")
        forgery = serve_forgery(URL + "/api/admin/plugins/points/disable")
        evil = ctx.new_page()
        with evil.expect_response(lambda r: r.url.endswith("/disable")) as answer:
            evil.goto(f"http://127.0.0.1:{forgery.server_port}/")
        assert answer.value.status == 403, answer.value.status
        assert "SHOP_CSRF_REFUSED" in answer.value.text()
        # Cross-site (localhost is another site than 127.0.0.1): the cookie is not even sent.
        with evil.expect_response(lambda r: r.url.endswith("/disable")) as answer:
            evil.goto(f"http://localhost:{forgery.server_port}/")
        assert answer.value.status in (401, 403), answer.value.status
        evil.close()
        forgery.shutdown()
        page.goto(URL + "/console")
        expect(page.locator("#plugin-table tr[data-plugin='points']")).to_contain_text("enabled")

        step("a crafted link's name stays one path segment: it cannot call another operation")
        page.goto(URL + "/console/dead-letters?plugin=points%2Fdisable%3F")
        page.click("#redrive-plugin")
        expect(page.locator("#error")).to_contain_text("SHOP_PLUGIN_NOT_FOUND")
        page.goto(URL + "/console")
        expect(page.locator("#plugin-table tr[data-plugin='points']")).to_contain_text("enabled")

        step("logout ends the session")
        page.click("#logout")
        expect(page).to_have_url(LOGIN)
        page.goto(URL + "/console/dead-letters")
        expect(page).to_have_url(LOGIN)

        step("without a session: every page redirects to login, every action answers 401")
        anon = browser.new_context().new_page()
        for path in PAGES:
            anon.goto(URL + path)
            expect(anon).to_have_url(LOGIN)
        for method, path in [("POST", "/api/admin/plugins/points/disable"), ("POST", f"/api/admin/dead-letters/{DEAD_LETTER_ID}/redrive"),
                             ("POST", "/api/admin/replays"), ("DELETE", "/api/admin/replays/1"), ("GET", "/api/admin/overview"),
                             ("POST", "/console/logout")]:
            assert api_status(anon, method, path) == 401, (method, path)

        step("logging in from a deep link lands on that page")
        anon.goto(f"{URL}/console/orders/{ORDER_ID}")
        anon.fill("input[name=token]", TOKEN)
        anon.click("button[type=submit]")
        expect(anon).to_have_url(re.compile(rf"/console/orders/{ORDER_ID}$"))
        expect(anon.locator("#steps")).to_be_visible()

        assert not errors, f"script errors on the pages: {errors}"
        browser.close()
    print("console: every step passed", flush=True)


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # the Rust test prints this output when it fails
        print(f"FAILED: {type(e).__name__}: {e}", flush=True)
        sys.exit(1)
