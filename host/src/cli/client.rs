//! A client of a running host's admin API, for the CLI: the URL and token come from the same
//! configuration as the server's (`http_addr`, `admin_token`), or from `--host` / `--token`.

use std::time::Duration;

use anyhow::{anyhow, Context};
use clap::Args;
use secrecy::ExposeSecret;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::ConfigArg;

#[derive(Debug, Clone, Args)]
pub struct HostArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// The host's base URL, or its address for http:// (default: the configured http_addr)
    #[arg(long, env = "SHOPMESH_HOST_URL", value_name = "URL")]
    pub host: Option<String>,
    /// The admin token (default: the configured admin_token)
    #[arg(long, env = "SHOPMESH_ADMIN_TOKEN", hide_env_values = true, value_name = "TOKEN")]
    pub token: Option<String>,
}

pub struct Client {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl HostArgs {
    pub fn client(&self) -> anyhow::Result<Client> {
        let settings = self.config.load()?;
        let base = match &self.host {
            Some(url) if url.contains("://") => url.trim_end_matches('/').to_owned(),
            Some(addr) => format!("http://{}", addr.trim_end_matches('/')),
            None => {
                let mut addr = settings.http_addr;
                if addr.ip().is_unspecified() {
                    addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
                }
                format!("http://{addr}")
            }
        };
        let token = self.token.clone().unwrap_or_else(|| settings.admin_token.expose_secret().to_owned());
        let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build()?;
        Ok(Client { base, token, http })
    }
}

impl Client {
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends a request to the admin API; an error answer becomes an error with the API's
    /// code and message.
    pub async fn call<T: DeserializeOwned>(&self, method: reqwest::Method, path: &str, body: Option<reqwest::Body>, json: bool) -> anyhow::Result<T> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method, &url).bearer_auth(&self.token);
        if let Some(body) = body {
            let ty = if json { "application/json" } else { "application/octet-stream" };
            req = req.header(reqwest::header::CONTENT_TYPE, ty).body(body);
        }
        let resp = req.send().await.map_err(|e| {
            let said = if e.is_connect() || e.is_timeout() {
                format!("cannot reach the host at {} (is it running? another host: --host or SHOPMESH_HOST_URL)", self.base)
            } else {
                // Reached, then cut off while sending: the host refuses a body over its limit
                // unread (413) and closes, which the client may meet before the answer.
                format!("the host at {} closed the connection while the request was sent (a body over its limit is refused unread: a plugin upload's is SHOPMESH_PLUGIN_UPLOAD_LIMIT, 8 MiB unless set)", self.base)
            };
            anyhow::Error::new(e).context(said)
        })?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            let reason = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| Some(format!("{}: {}", v["code"].as_str()?, v["message"].as_str()?)))
                .unwrap_or(text);
            return Err(anyhow!("{status} from {url}: {reason}"));
        }
        serde_json::from_str(&text).with_context(|| format!("unexpected answer from {url}"))
    }

    /// Whether `error` is that the host could not be reached (no answer at all).
    pub fn unreachable(error: &anyhow::Error) -> bool {
        error.downcast_ref::<reqwest::Error>().is_some_and(|e| e.is_connect() || e.is_timeout())
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.call(reqwest::Method::GET, path, None, true).await
    }

    /// A POST without a body (an action: redrive, dismiss, enable, disable).
    pub async fn post<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.call(reqwest::Method::POST, path, None, true).await
    }

    pub async fn post_json<T: DeserializeOwned>(&self, path: &str, body: &Value) -> anyhow::Result<T> {
        self.call(reqwest::Method::POST, path, Some(body.to_string().into()), true).await
    }
}
