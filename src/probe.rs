//! `pulse probe URL`: an HTTP GET for exec probes, `helm test` and HEALTHCHECK,
//! where the image has no shell and no curl.

use std::time::Duration;

/// Why a probe failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// No answer (connection refused, timeout, bad URL...).
    #[error("GET {url} failed: {source}")]
    Request {
        /// The URL probed.
        url: String,
        /// The client's error.
        source: reqwest::Error,
    },
    /// An answer outside 2xx.
    #[error("GET {url} answered {status}")]
    Status {
        /// The URL probed.
        url: String,
        /// The status received.
        status: reqwest::StatusCode,
    },
}

/// GETs `url`; `Ok` on a 2xx answer within `timeout`.
pub fn probe(url: &str, timeout: Duration) -> Result<reqwest::StatusCode, ProbeError> {
    let request_error = |source| ProbeError::Request {
        url: url.to_owned(),
        source,
    };
    let client = reqwest::blocking::Client::builder()
        .timeout(timeout)
        .build()
        .map_err(request_error)?;
    let status = client.get(url).send().map_err(request_error)?.status();
    if status.is_success() {
        Ok(status)
    } else {
        Err(ProbeError::Status {
            url: url.to_owned(),
            status,
        })
    }
}
