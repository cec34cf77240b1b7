//! The reqwest adapter of [`OenGateway`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use reqwest::{Method, StatusCode};
use secrecy::ExposeSecret;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::wire::{self, CallKind};
use super::{
    ChargeReceipt, ChargeRequest, CheckoutRequest, OenError, OenGateway, PageToken, RefundRequest,
    Transaction, TransactionListQuery, TransactionPage,
};
use crate::domain::{CheckoutId, MerchantId, OrderId, TransactionId};
use crate::secrets::SecretSource;

/// Timeouts and retry policy of the Oen client.
#[derive(Debug, Clone)]
pub struct OenClientConfig {
    pub base_url: String,
    pub merchant_id: MerchantId,
    /// Time to establish a connection; a connect failure means the request was not sent.
    pub connect_timeout: Duration,
    /// Time for a whole call. Well under a Lambda's timeout; Oen itself gives up at 29 s with 504.
    pub request_timeout: Duration,
    /// Attempts of a query (GET) before its error is returned.
    pub query_attempts: u32,
    /// First back-off step between query attempts; doubles each time. Each pause is drawn
    /// between half the step and the whole step (see [`query_pauses`]).
    pub query_backoff: Duration,
}

impl OenClientConfig {
    pub fn new(base_url: impl Into<String>, merchant_id: MerchantId) -> Self {
        Self {
            base_url: base_url.into().trim_end_matches('/').to_owned(),
            merchant_id,
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(20),
            query_attempts: 3,
            query_backoff: Duration::from_millis(200),
        }
    }
}

pub struct HttpOenGateway {
    /// Built on the first call rather than with the gateway: building it loads the platform's
    /// root certificates (rustls-platform-verifier reads the system store), milliseconds that a
    /// cold start should not pay before it is known to call Oen at all (the webhook never does;
    /// the charger's scheduled planning run does not). Certificate verification is unchanged.
    http: tokio::sync::OnceCell<reqwest::Client>,
    config: OenClientConfig,
    secrets: Arc<dyn SecretSource>,
}

impl HttpOenGateway {
    /// The gateway; its HTTP client is built on the first call, and a failure to build it is
    /// that call's [`OenError::NotSent`] (nothing left the process). The `Result` stays for the
    /// callers that check it.
    pub fn new(config: OenClientConfig, secrets: Arc<dyn SecretSource>) -> Result<Self, OenError> {
        Ok(Self {
            http: tokio::sync::OnceCell::new(),
            config,
            secrets,
        })
    }

    /// The HTTP client, built once: concurrent first calls wait for the one build.
    async fn http(&self) -> Result<&reqwest::Client, OenError> {
        self.http
            .get_or_try_init(|| async {
                reqwest::Client::builder()
                    .connect_timeout(self.config.connect_timeout)
                    .timeout(self.config.request_timeout)
                    // Oen never redirects an API call; a redirect is an answer to classify, not
                    // follow.
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .map_err(|e| OenError::NotSent(format!("cannot build the HTTP client: {e}")))
            })
            .await
    }

    /// One HTTP exchange, classified. Secrets are read per call from the cached source; an
    /// `A0001` forces one refresh and one more try: Oen refused the call at authentication, so
    /// nothing was created and resending is safe even for a creating call.
    async fn call(
        &self,
        kind: CallKind,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Value, OenError> {
        self.call_before(kind, method, path, body, None).await
    }

    /// [`Self::call`], sending nothing after `send_by`: a resend after `A0001` that would leave
    /// later is given up as not sent.
    async fn call_before(
        &self,
        kind: CallKind,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        send_by: Option<Instant>,
    ) -> Result<Value, OenError> {
        let secrets = self
            .secrets
            .current()
            .await
            .map_err(|e| OenError::NotSent(e.to_string()))?;
        match self
            .exchange(
                kind,
                method.clone(),
                path,
                body.clone(),
                secrets.secrets.api_token.expose_secret(),
            )
            .await
        {
            Err(e) if e.is_auth_failure() => {
                tracing::warn!(path = %redact_path(path), "Oen answered A0001; re-reading the API key");
                let fresh = self
                    .secrets
                    .refresh(secrets.generation)
                    .await
                    .map_err(|e| OenError::NotSent(e.to_string()))?;
                if fresh.generation == secrets.generation {
                    return Err(e);
                }
                if send_by.is_some_and(|by| Instant::now() > by) {
                    return Err(OenError::NotSent(
                        "A0001, and no time left to send again before the lease's send deadline"
                            .into(),
                    ));
                }
                self.exchange(
                    kind,
                    method,
                    path,
                    body,
                    fresh.secrets.api_token.expose_secret(),
                )
                .await
            }
            other => other,
        }
    }

    async fn exchange(
        &self,
        kind: CallKind,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        api_token: &str,
    ) -> Result<Value, OenError> {
        let url = format!("{}{}", self.config.base_url, path);
        let mut req = self
            .http()
            .await?
            .request(method, &url)
            .bearer_auth(api_token);
        if let Some(body) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        let response = req.send().await.map_err(transport_error)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(transport_error)?;
        let result = wire::classify(kind, status.as_u16(), &bytes);
        if let Err(e) = &result {
            tracing::info!(path = %redact_path(path), status = status.as_u16(), error = %e, "Oen call failed");
        }
        result
    }

    async fn create<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        send_by: Option<Instant>,
    ) -> Result<T, OenError> {
        let bytes = serde_json::to_vec(body)
            .map_err(|e| OenError::NotSent(format!("cannot encode the request: {e}")))?;
        let data = self
            .call_before(CallKind::Create, Method::POST, path, Some(bytes), send_by)
            .await?;
        parse_data(data)
    }

    async fn query<T: DeserializeOwned>(&self, path: &str) -> Result<T, OenError> {
        // Without randomness a pause is its whole step: slower, never shorter.
        let mut pauses = query_pauses(&self.config, || getrandom::u64().unwrap_or(u64::MAX));
        let mut attempt = 1;
        loop {
            let e = match self.call(CallKind::Query, Method::GET, path, None).await {
                Ok(data) => return parse_data(data),
                Err(
                    e @ (OenError::NotSent(_) | OenError::Unknown(_) | OenError::Transient { .. }),
                ) => e,
                Err(e) => return Err(e),
            };
            let Some(pause) = pauses.next() else {
                return Err(e);
            };
            tracing::debug!(error = %e, attempt, "retrying an Oen query");
            tokio::time::sleep(pause).await;
            attempt += 1;
        }
    }
}

/// The pauses between the attempts of one query, one fewer than `query_attempts`: exponential
/// back-off from `query_backoff` with "equal jitter", half of each step fixed and the other half
/// scaled by a `random` draw, so that the clients of one Oen outage do not retry in lockstep
/// while each still waits at least half its step.
fn query_pauses(
    config: &OenClientConfig,
    mut random: impl FnMut() -> u64,
) -> impl Iterator<Item = Duration> {
    let mut step = config.query_backoff;
    (1..config.query_attempts).map(move |_| {
        let half = step / 2;
        let spread = u64::try_from((step - half).as_nanos()).unwrap_or(u64::MAX);
        let extra = u128::from(spread) * u128::from(random()) / u128::from(u64::MAX);
        let pause = half + Duration::from_nanos(u64::try_from(extra).unwrap_or(spread));
        step = step.saturating_mul(2);
        pause
    })
}

fn parse_data<T: DeserializeOwned>(data: Value) -> Result<T, OenError> {
    serde_json::from_value(data).map_err(|e| OenError::Unexpected {
        status: StatusCode::OK.as_u16(),
        excerpt: format!(
            "S0000 with a data shape we do not understand ({})",
            e.classify_message()
        ),
    })
}

trait ClassifyMessage {
    fn classify_message(&self) -> String;
}

impl ClassifyMessage for serde_json::Error {
    /// The field-level reason without any quoted value.
    fn classify_message(&self) -> String {
        let text = self.to_string();
        if text.starts_with("missing field") {
            text
        } else {
            format!("{:?} error", self.classify())
        }
    }
}

/// Transport failures: a connect failure never reached Oen; anything later might have.
fn transport_error(e: reqwest::Error) -> OenError {
    let reason = if e.is_timeout() {
        "timed out"
    } else {
        "connection failed"
    };
    let connect = e.is_connect();
    // Without the URL: a base URL may carry credentials.
    let detail = format!("{reason}: {}", error_chain(&e.without_url()));
    if connect {
        OenError::NotSent(detail)
    } else {
        OenError::Unknown(detail)
    }
}

fn error_chain(e: &reqwest::Error) -> String {
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    wire::excerpt(out.as_bytes())
}

/// Paths name order ids and transaction numbers, which are fine in logs; this keeps only the
/// endpoint shape so that log lines group well.
fn redact_path(path: &str) -> &str {
    let endpoint = path.split('/').nth(1).unwrap_or(path);
    endpoint.split('?').next().unwrap_or(endpoint)
}

#[async_trait]
impl OenGateway for HttpOenGateway {
    fn merchant_id(&self) -> &MerchantId {
        &self.config.merchant_id
    }

    async fn create_checkout(&self, req: &CheckoutRequest) -> Result<CheckoutId, OenError> {
        let body = wire::CheckoutBody {
            merchant_id: self.config.merchant_id.as_str(),
            success_url: req.success_url.as_deref(),
            failure_url: req.failure_url.as_deref(),
            custom_id: req.custom_id.as_deref(),
            payer_email: req.payer_email.as_deref(),
            note: req.note.as_deref(),
        };
        let data: wire::IdData = self.create("/checkout-token", &body, None).await?;
        CheckoutId::parse(&data.id).map_err(|e| OenError::Unexpected {
            status: 200,
            excerpt: e.to_string(),
        })
    }

    async fn charge(&self, req: &ChargeRequest) -> Result<ChargeReceipt, OenError> {
        let send_by = req.send_within.map(|w| Instant::now() + w);
        let body = wire::ChargeBody {
            merchant_id: self.config.merchant_id.as_str(),
            amount: req.amount.ntd(),
            currency: "TWD",
            token: req.token.expose(),
            order_id: req.order_id.as_str(),
            product_details: &req.product_details,
            user_id: req.user_id.as_deref(),
            user_name: req.payer.name.as_ref().map(|n| n.as_str()),
            user_email: req.payer.email.as_ref().map(|e| e.as_str()),
            invoice_info: req.payer.invoice_info.as_ref().map(|i| i.to_json()),
            note: req.note.as_deref(),
        };
        let data: wire::ChargeData = self
            .create("/token/transactions", &body, send_by)
            .await
            .map_err(|e| match e {
                // S0000 with a body we cannot read: the charge happened, we just cannot see it.
                OenError::Unexpected {
                    status: 200,
                    excerpt,
                } => OenError::Unknown(excerpt),
                other => other,
            })?;
        let transaction_number = TransactionId::parse(&data.id).map_err(|e| {
            OenError::Unknown(format!(
                "charged, but the transaction number is unreadable: {e}"
            ))
        })?;
        Ok(ChargeReceipt {
            transaction_number,
            auth_code: data.auth_code,
        })
    }

    async fn order_transactions(&self, order: &OrderId) -> Result<Vec<Transaction>, OenError> {
        let data: wire::TransactionsData =
            self.query(&format!("/order/{order}/transactions")).await?;
        Ok(data.transactions)
    }

    async fn transaction(&self, id: &TransactionId) -> Result<Transaction, OenError> {
        self.query(&format!("/transactions/{id}")).await
    }

    async fn refund(&self, req: &RefundRequest) -> Result<(), OenError> {
        let body = wire::RefundBody {
            merchant_id: self.config.merchant_id.as_str(),
            amount: req.amount.map(|a| a.ntd()),
            reason: req.reason.as_deref(),
            product_details: &req.product_details,
        };
        let _: Value = self
            .create(&format!("/refunds/{}", req.transaction_number), &body, None)
            .await?;
        Ok(())
    }

    async fn list_transactions(
        &self,
        query: &TransactionListQuery,
    ) -> Result<TransactionPage, OenError> {
        let data: wire::TransactionPageData = self.query(&list_path(query)).await?;
        let next = data.page.and_then(wire::PageValue::into_token);
        check_page_advances(query, data.transactions.len(), next.as_ref())?;
        Ok(TransactionPage {
            transactions: data.transactions,
            next,
        })
    }
}

/// `/transactions?start=yyyy-MM-dd&end=yyyy-MM-dd[&page=…]`.
fn list_path(query: &TransactionListQuery) -> String {
    let mut path = format!(
        "/transactions?start={}&end={}",
        query.start.format("%Y-%m-%d"),
        query.end.format("%Y-%m-%d")
    );
    if let Some(page) = &query.page {
        let encoded: String = form_urlencoded::byte_serialize(page.as_str().as_bytes()).collect();
        path.push_str("&page=");
        path.push_str(&encoded);
    }
    path
}

/// A page that names itself as the next one, or an empty page that names a next one, would
/// have the caller page forever.
fn check_page_advances(
    query: &TransactionListQuery,
    entries: usize,
    next: Option<&PageToken>,
) -> Result<(), OenError> {
    let Some(next) = next else {
        return Ok(());
    };
    let reason = if query.page.as_ref() == Some(next) {
        "a transaction page named itself as the next page"
    } else if entries == 0 {
        "an empty transaction page named a next page"
    } else {
        return Ok(());
    };
    Err(OenError::Unexpected {
        status: 200,
        excerpt: reason.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(backoff: Duration, attempts: u32) -> OenClientConfig {
        let mut config =
            OenClientConfig::new("http://oen.invalid", MerchantId::parse("ming").unwrap());
        config.query_backoff = backoff;
        config.query_attempts = attempts;
        config
    }

    /// Checks every pause against its bounds, half of its doubling step and the whole step, and
    /// returns the bounds.
    fn assert_within_bounds(
        config: &OenClientConfig,
        random: impl FnMut() -> u64,
    ) -> Vec<(Duration, Duration)> {
        let bounds: Vec<(Duration, Duration)> =
            std::iter::successors(Some(config.query_backoff), |s| Some(s.saturating_mul(2)))
                .take(config.query_attempts.saturating_sub(1) as usize)
                .map(|step| (step / 2, step))
                .collect();
        let pauses: Vec<Duration> = query_pauses(config, random).collect();
        assert_eq!(pauses.len(), bounds.len(), "one pause between two attempts");
        for (pause, (low, high)) in pauses.iter().zip(&bounds) {
            assert!(
                low <= pause && pause <= high,
                "{pause:?} outside [{low:?}, {high:?}]"
            );
        }
        bounds
    }

    #[test]
    fn query_pauses_stay_between_half_and_all_of_each_doubling_step() {
        let default =
            OenClientConfig::new("http://oen.invalid", MerchantId::parse("ming").unwrap());
        for config in [
            default,
            config(Duration::from_millis(50), 8),
            config(Duration::from_nanos(3), 4),
        ] {
            for _ in 0..200 {
                assert_within_bounds(&config, || getrandom::u64().unwrap());
            }
            // The extremes of the draw reach the bounds exactly.
            let bounds = assert_within_bounds(&config, || 0);
            let lows: Vec<Duration> = query_pauses(&config, || 0).collect();
            let highs: Vec<Duration> = query_pauses(&config, || u64::MAX).collect();
            assert_eq!(lows, bounds.iter().map(|b| b.0).collect::<Vec<_>>());
            assert_eq!(highs, bounds.iter().map(|b| b.1).collect::<Vec<_>>());
        }
    }

    #[test]
    fn absurd_back_off_steps_still_keep_their_bounds() {
        let config = config(Duration::from_secs(u64::MAX / 4), 5);
        for random in [0, 1, u64::MAX / 2, u64::MAX] {
            assert_within_bounds(&config, || random);
        }
    }

    #[test]
    fn a_single_attempt_never_pauses() {
        assert_eq!(
            query_pauses(&config(Duration::from_secs(1), 1), || 0).count(),
            0
        );
        assert_eq!(
            query_pauses(&config(Duration::from_secs(1), 0), || 0).count(),
            0
        );
    }
}
