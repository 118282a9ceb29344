//! The one HTTP client doctor's checks share: JSON GETs against a base URL, each
//! failure a sentence naming the URL.

use std::time::Duration;

use serde_json::Value;

/// Why a call to one of the lab's APIs failed: the sentence a check's cause quotes.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// No connection or no answer in time.
    #[error("{url} unreachable: {reason}")]
    Unreachable {
        /// What was asked.
        url: String,
        /// The client's error, with its sources.
        reason: String,
    },
    /// An answer outside 2xx.
    #[error("{url} answered {status}: {body}")]
    Status {
        /// What was asked.
        url: String,
        /// The status received.
        status: u16,
        /// The start of the body, for the error text most APIs put there.
        body: String,
    },
    /// A 2xx answer that is not the JSON the API documents.
    #[error("{url} answered something other than JSON: {reason}")]
    NotJson {
        /// What was asked.
        url: String,
        /// The parser's message.
        reason: String,
    },
}

impl CallError {
    /// The status of an answer outside 2xx, if that was the failure.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// One service's HTTP API: a base URL and, for Grafana, basic credentials.
#[derive(Debug, Clone)]
pub struct Endpoint {
    base: String,
    client: reqwest::Client,
    basic_auth: Option<(String, String)>,
}

/// The longest any single call may take, whatever `--timeout` says: a check that
/// waits for data to arrive polls with many short calls.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

impl Endpoint {
    /// An endpoint at `base` (`http://host:port`, a trailing `/` ignored).
    pub fn new(
        base: &str,
        timeout: Duration,
        basic_auth: Option<(&str, &str)>,
    ) -> Result<Self, CallError> {
        let client = reqwest::Client::builder()
            .timeout(timeout.min(CALL_TIMEOUT))
            // A redirect is an answer worth reporting (Grafana sends a login page's).
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| CallError::Unreachable {
                url: base.to_owned(),
                reason: chain(&e),
            })?;
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            client,
            basic_auth: basic_auth.map(|(u, p)| (u.to_owned(), p.to_owned())),
        })
    }

    /// The base URL, for messages.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// GETs `path` with `query` and parses the JSON answer.
    pub async fn get_json(&self, path: &str, query: &[(&str, &str)]) -> Result<Value, CallError> {
        let (url, body) = self.get(path, query, &[]).await?;
        serde_json::from_slice(&body).map_err(|e| CallError::NotJson {
            url,
            reason: e.to_string(),
        })
    }

    /// GETs `path` with `query` and extra headers; the URL and the body of a 2xx answer.
    pub async fn get(
        &self,
        path: &str,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> Result<(String, Vec<u8>), CallError> {
        let url = format!("{}{path}", self.base);
        let mut request = self.client.get(&url).query(query);
        if let Some((user, password)) = &self.basic_auth {
            request = request.basic_auth(user, Some(password));
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let unreachable = |e: reqwest::Error| CallError::Unreachable {
            url: url.clone(),
            reason: chain(&e),
        };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let body = response.bytes().await.map_err(unreachable)?;
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body);
            return Err(CallError::Status {
                url,
                status: status.as_u16(),
                body: text.chars().take(200).collect::<String>().trim().to_owned(),
            });
        }
        Ok((url, body.to_vec()))
    }
}

/// An error and its sources in one line ("error sending request: connection refused").
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        source = cause.source();
    }
    text
}
