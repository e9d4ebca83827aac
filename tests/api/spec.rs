//! The committed spec in openapi/ is what the server serves.

use crate::helpers::{spawn_app, Backend};

#[tokio::test]
async fn committed_spec_equals_served_spec() {
    let app = spawn_app(Backend::Sqlite).await;
    let served = app.http.get(format!("{}/openapi.json", app.address)).send().await.unwrap().text().await.unwrap();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi/openapi.json");
    let committed = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{path}: {e}; regenerate with scripts/openapi"));
    let served: serde_json::Value = serde_json::from_str(&served).unwrap();
    let committed: serde_json::Value = serde_json::from_str(&committed).unwrap();
    assert!(served == committed, "openapi/openapi.json differs from the served spec; regenerate with scripts/openapi");

    let docs = app.http.get(format!("{}/docs", app.address)).send().await.unwrap();
    assert_eq!(docs.status().as_u16(), 200);
    assert!(docs.text().await.unwrap().contains("swagger"), "Swagger UI is served at /docs");
}
