//! Fetching a registration's biometrics from MOSIP's data share (`referenceURL` of an ABIS
//! Insert or Identify): an HTTPS GET with MOSIP's `Authorization` cookie, a size limit, MOSIP's
//! "expired" answer told apart, and the payload decrypted by the caller-supplied function (the
//! keystore's MOSIP hybrid decryption, with the key MOSIP's ABIS partner certificate names).

use crate::{Fetch, FetchError};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// Default limit on a fetched payload (a CBEFF with 10 finger images, 2 irises and a face is a
/// few MB; MOSIP's packets are limited to 5 MB).
pub const PAYLOAD_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Time limit for one fetch.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(30);

/// Turns a fetched payload into the CBEFF document (e.g. MOSIP hybrid decryption).
pub type Decrypt = Arc<dyn Fn(&[u8]) -> Result<Vec<u8>, FetchError> + Send + Sync>;

/// MOSIP's data share as a `Fetch`.
#[derive(Clone)]
pub struct Datashare {
    client: reqwest::Client,
    /// Value of MOSIP's `Authorization` cookie (a Keycloak token), when the share needs one.
    cookie: Option<String>,
    decrypt: Option<Decrypt>,
    allow_http: bool,
    max_bytes: usize,
}

impl std::fmt::Debug for Datashare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Datashare").field("decrypts", &self.decrypt.is_some()).field("allow_http", &self.allow_http).finish_non_exhaustive()
    }
}

impl Datashare {
    /// A fetcher that decrypts with `decrypt` (`None`: the share sends plain CBEFF, as MOSIP's
    /// policies without encryption do).
    ///
    /// # Errors
    /// `Unreachable` when the HTTP client cannot be built.
    pub fn new(cookie: Option<String>, decrypt: Option<Decrypt>) -> Result<Self, FetchError> {
        let client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|_| FetchError::Unreachable("client".into()))?;
        Ok(Datashare { client, cookie, decrypt, allow_http: false, max_bytes: PAYLOAD_BYTES_MAX })
    }

    /// Also accept plain `http://` URLs (a data share inside a private network, tests).
    #[must_use]
    pub fn allow_http(mut self, allow: bool) -> Self {
        self.allow_http = allow;
        self
    }

    #[must_use]
    pub fn max_bytes(mut self, max: usize) -> Self {
        self.max_bytes = max;
        self
    }

    async fn get(&self, url: &str) -> Result<Vec<u8>, FetchError> {
        let parsed = reqwest::Url::parse(url).map_err(|_| FetchError::BadUrl)?;
        match parsed.scheme() {
            "https" => {}
            "http" if self.allow_http => {}
            _ => return Err(FetchError::BadUrl),
        }
        let mut req = self.client.get(parsed);
        if let Some(c) = &self.cookie {
            req = req.header(reqwest::header::COOKIE, format!("Authorization={c}"));
        }
        let resp = req.send().await.map_err(|_| FetchError::Unreachable("no answer".into()))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(FetchError::Unreachable(format!("HTTP {}", status.as_u16())));
        }
        let body = read_limited(resp, self.max_bytes).await?;
        // MOSIP's data share answers errors as JSON with HTTP 200: `{"errors":[{"errorCode":
        // "DAT-SER-006", …}]}` when the share has expired or been used as often as allowed.
        if body.first() == Some(&b'{')
            && let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body)
            && let Some(errors) = v.get("errors").and_then(|e| e.as_array()).filter(|e| !e.is_empty())
        {
            let expired = errors.iter().any(|e| e.get("errorCode").and_then(|c| c.as_str()) == Some("DAT-SER-006"));
            return Err(if expired { FetchError::Expired } else { FetchError::Unreachable("data share error".into()) });
        }
        match &self.decrypt {
            Some(d) => d(&body),
            None => Ok(body),
        }
    }
}

/// An HTTP answer's body, refused as `TooLarge` once it passes `max` bytes (announced or not).
///
/// # Errors
/// `TooLarge`, or `Unreachable` when the body is cut off.
pub(crate) async fn read_limited(mut resp: reqwest::Response, max: usize) -> Result<Vec<u8>, FetchError> {
    if resp.content_length().is_some_and(|n| n > max as u64) {
        return Err(FetchError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|_| FetchError::Unreachable("body".into()))? {
        if body.len() + chunk.len() > max {
            return Err(FetchError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

impl Fetch for Datashare {
    fn fetch<'a>(&'a self, url: &'a str) -> Pin<Box<dyn Future<Output = Result<Vec<u8>, FetchError>> + Send + 'a>> {
        Box::pin(self.get(url))
    }
}
