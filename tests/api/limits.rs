//! What a request may cost the host: a body over its route's cap is answered 413 in the
//! API's shape before it is read (announced or chunked), without the host's memory growing
//! with it; requests past the in-flight bound get 503 at once; a wrong method says which
//! methods the path allows.

use std::time::Duration;

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::tcp::{OwnedReadHalf, OwnedWriteHalf},
};

use crate::helpers::{spawn_app_with, Backend, HostProcess, TestDb, TestNats};

const FIFTY_MB: usize = 50 * 1024 * 1024;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Connects to `address` and sends the head of a JSON POST to `path` whose body is framed by
/// `framing` (a `Content-Length` or `Transfer-Encoding` header).
async fn post_head(address: &str, path: &str, framing: &str) -> (OwnedReadHalf, OwnedWriteHalf) {
    request_head("POST", address, path, framing).await
}

/// [`post_head`] with another method.
async fn request_head(method: &str, address: &str, path: &str, framing: &str) -> (OwnedReadHalf, OwnedWriteHalf) {
    let host = address.trim_start_matches("http://");
    let stream = tokio::net::TcpStream::connect(host).await.unwrap();
    let (read, mut write) = stream.into_split();
    let head = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n{framing}\r\n\r\n");
    write.write_all(head.as_bytes()).await.unwrap();
    (read, write)
}

/// The status line and body read from `read` until the server closes (or 30 s).
async fn answer(read: &mut OwnedReadHalf) -> (String, String) {
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), read.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (head.lines().next().unwrap_or_default().to_owned(), body.to_owned())
}

/// Sends a request head announcing a body of `total` bytes and nothing more: a server that
/// refuses on the head alone answers at once. (A client that went on sending would have the
/// server close on unread bytes, a reset that can discard the answer before it is read.)
async fn announced_post(address: &str, path: &str, total: usize) -> (String, String) {
    let (mut read, _write) = post_head(address, path, &format!("Content-Length: {total}")).await;
    answer(&mut read).await
}

/// Sends a request head with `Transfer-Encoding: chunked`, then up to `total` bytes of body
/// in chunks while the server reads; returns the status line and body the server answered.
async fn chunked_post(address: &str, path: &str, total: usize) -> (String, String) {
    let (mut read, mut write) = post_head(address, path, "Transfer-Encoding: chunked").await;
    let writer = tokio::spawn(async move {
        let chunk = vec![b' '; 64 * 1024];
        let mut sent = 0;
        while sent < total {
            let framed = [format!("{:x}\r\n", chunk.len()).into_bytes(), chunk.clone(), b"\r\n".to_vec()].concat();
            if write.write_all(&framed).await.is_err() {
                break; // the server answered and closed: it read no further
            }
            sent += chunk.len();
        }
        let _ = write.write_all(b"0\r\n\r\n").await;
        sent
    });
    let answered = answer(&mut read).await;
    writer.abort();
    answered
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_body_is_refused_before_it_is_read() {
    let db = TestDb::new(Backend::Sqlite).await;
    let nats = TestNats::start().await;
    let host = HostProcess::start(&db.url, &nats.url(), &[("SHOPMESH_PLUGIN_UPLOAD_LIMIT", "100000")]).await;
    let pid = host.child.id().unwrap();
    // A fresh connection per request: the host closes one whose body it did not read.
    let http = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let before = rss_kib(pid);

    // Announced: 413 on the head alone, in the API's shape.
    for path in ["/api/orders", "/api/payments", "/api/payments/callback", "/api/admin/goods"] {
        let (status, body) = announced_post(&host.address, path, FIFTY_MB).await;
        assert!(status.contains(" 413 "), "{path}: {status} {body}");
        let body: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
        assert_eq!(body["code"], "SHOP_PAYLOAD_TOO_LARGE", "{path}");
        assert!(body["message"].as_str().unwrap().contains("65536 bytes"), "{body}");
    }
    // Not announced (chunked): cut off at the cap while reading.
    let (status, body) = chunked_post(&host.address, "/api/orders", FIFTY_MB).await;
    assert!(status.contains(" 413 "), "{status} {body}");
    assert!(body.contains("SHOP_PAYLOAD_TOO_LARGE"), "{body}");
    let growth = rss_kib(pid).saturating_sub(before);
    assert!(growth < 10 * 1024, "the host grew by {growth} KiB for refused bodies");
    eprintln!("RSS before {before} KiB, growth after four announced and one chunked 50 MB body: {growth} KiB");

    // The upload cap is its own setting: 100,000 bytes here.
    let upload = |size: usize| {
        http.put(format!("{}/api/admin/plugins/points", host.address))
            .bearer_auth(crate::helpers::ADMIN_TOKEN)
            .header("content-type", "application/octet-stream")
            .body(vec![0u8; size])
            .send()
    };
    assert_eq!(upload(100_001).await.unwrap().status(), 413);
    let small = upload(1000).await.unwrap();
    assert_eq!(small.status(), 400, "under the cap, the component is read and refused for what it is");
    let body: serde_json::Value = small.json().await.unwrap();
    assert_eq!(body["code"], "SHOP_PLUGIN_REJECTED");
    // A plugin's grants are JSON under the plugin's path: the JSON cap, not the upload's.
    let (mut read, _write) = request_head("PUT", &host.address, "/api/admin/plugins/points/grants", "Content-Length: 70000").await;
    let (status, body) = answer(&mut read).await;
    assert!(status.contains(" 413 ") && body.contains("65536 bytes"), "{status} {body}");

    // A body just under the JSON cap is read and judged on its content.
    let padded = format!("{{\"user_id\": \"1\"{}}}", " ".repeat(60_000));
    let resp = http.post(format!("{}/api/orders", host.address)).header("content-type", "application/json").body(padded).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.json::<serde_json::Value>().await.unwrap()["code"], "SHOP_REQUEST_PARAMETER_INVALID");
}

/// With one request allowed in flight, a second one while the first is still sending its
/// body is answered 503 at once, with Retry-After; the liveness probe still answers (busy
/// is not dead); once the first is done, requests pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_in_flight_bound_the_answer_is_503_at_once() {
    let app = spawn_app_with(Backend::Sqlite, |s| s.http_max_in_flight = 1).await;
    let host = app.address.trim_start_matches("http://").to_owned();
    let slow = tokio::net::TcpStream::connect(&host).await.unwrap();
    let (mut slow_read, mut slow_write) = slow.into_split();
    let head = format!("POST /api/orders HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n{{\r\n");
    slow_write.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await; // the first request holds its slot

    let busy = app.http.get(format!("{}/readyz", app.address)).send().await.unwrap();
    assert_eq!(busy.status(), 503);
    assert_eq!(busy.headers()["retry-after"], "1");
    assert_eq!(busy.json::<serde_json::Value>().await.unwrap()["code"], "SHOP_OVERLOADED");
    assert_eq!(app.get("/healthz").await.status, 200, "alive while busy");

    slow_write.write_all(b"0\r\n\r\n").await.unwrap();
    let mut answer = vec![0u8; 512];
    let n = slow_read.read(&mut answer).await.unwrap();
    assert!(String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 400"), "the slow request was answered");
    crate::helpers::wait_for("a free slot", Duration::from_secs(5), || async {
        (app.get("/readyz").await.status == 200).then_some(())
    })
    .await;
}

/// A body that does not arrive by the deadline is answered 408 in the API's shape and
/// changes nothing; its slot is free again, so a client that announces a body and sends
/// nothing cannot hold the host's slots.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_does_not_arrive_in_time_is_answered_408() {
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.http_max_in_flight = 1;
        s.http_body_timeout = Duration::from_secs(1);
    })
    .await;
    let orders = app.count("trade_order", "").await;
    let (mut read, _write) = post_head(&app.address, "/api/orders", "Content-Length: 400").await;
    let (status, body) = answer(&mut read).await;
    assert!(status.starts_with("HTTP/1.1 408"), "{status} {body}");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(body["code"], "SHOP_REQUEST_TIMEOUT", "{body}");
    assert_eq!(app.count("trade_order", "").await, orders, "nothing changed");
    assert_eq!(app.get("/readyz").await.status, 200, "the slot is free again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_method_says_which_are_allowed() {
    let app = spawn_app_with(Backend::Sqlite, |_| {}).await;
    let resp = app.http.delete(format!("{}/api/orders", app.address)).send().await.unwrap();
    assert_eq!(resp.status(), 405);
    assert_eq!(resp.headers()["allow"], "POST");
    assert_eq!(resp.json::<serde_json::Value>().await.unwrap()["code"], "SHOP_METHOD_NOT_ALLOWED");
    let resp = app.http.post(format!("{}/api/orders/345963634385633280", app.address)).send().await.unwrap();
    assert_eq!(resp.status(), 405);
    assert_eq!(resp.headers()["allow"], "GET");
    // A method nobody routes is one metrics label, whatever its name.
    let made_up = reqwest::Method::from_bytes(b"BREW").unwrap();
    assert_eq!(app.http.request(made_up, format!("{}/api/orders", app.address)).send().await.unwrap().status(), 405);
    let metrics = app.http.get(format!("{}/metrics", app.address)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"method="OTHER""#) && !metrics.contains("BREW"), "{metrics}");
    // A route outside the spec says so too.
    let resp = app.http.post(format!("{}/metrics", app.address)).send().await.unwrap();
    assert_eq!(resp.status(), 405);
    assert_eq!(resp.headers()["allow"], "GET");
    assert_eq!(resp.json::<serde_json::Value>().await.unwrap()["code"], "SHOP_METHOD_NOT_ALLOWED");
}
