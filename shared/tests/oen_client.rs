//! The Oen client against a loopback server that answers with every response shape of the
//! contract: each outcome must be classified for what the caller may do next.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oen_pay::domain::{
    Amount, CardToken, Catalog, MerchantId, OrderId, Plan, ProductDetail, SubscriptionId,
    TransactionId,
};
use oen_pay::oen::{
    ChargeRequest, CheckoutRequest, HttpOenGateway, OenClientConfig, OenError, OenGateway,
    PageToken, RefundRequest, TransactionListQuery,
};
use oen_pay::secrets::{CachedSecrets, FetchSecret, SecretError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const TOKEN: &str = "2HhnhWm8Qe0sPz4LbXv9KdYt1Ra";
const API_KEY: &str = "apikey0123456789SECRET";
const ROTATED_KEY: &str = "apikeyROTATED9876543210";

/// What the fake Oen does with one request.
#[derive(Clone)]
enum Reply {
    /// Status, content type and body.
    Http(u16, &'static str, String),
    /// Read the request, then close the socket without answering.
    Drop,
    /// Read the request, then never answer.
    Hang,
}

fn json(status: u16, body: &str) -> Reply {
    Reply::Http(status, "application/json", body.to_owned())
}

#[derive(Debug, Clone)]
struct Seen {
    request_line: String,
    headers: String,
    body: String,
}

struct FakeOen {
    base_url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl FakeOen {
    /// Serves `replies` in order (the last one repeats). A request whose Authorization is not
    /// `accept_key` gets A0001 without consuming a reply.
    async fn start(replies: Vec<Reply>, accept_key: &'static str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            let mut next = 0usize;
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let Some(req) = read_request(&mut sock).await else {
                    continue;
                };
                log.lock().unwrap().push(req.clone());
                let reply = if !req
                    .headers
                    .contains(&format!("authorization: Bearer {accept_key}"))
                {
                    json(
                        401,
                        r#"{"code":"A0001","data":{},"message":"Unauthorized"}"#,
                    )
                } else {
                    let r = replies[next.min(replies.len() - 1)].clone();
                    next += 1;
                    r
                };
                match reply {
                    Reply::Http(status, ctype, body) => {
                        let head = format!(
                            "HTTP/1.1 {status} X\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                            body.len()
                        );
                        let _ = sock.write_all(head.as_bytes()).await;
                        let _ = sock.write_all(body.as_bytes()).await;
                        let _ = sock.shutdown().await;
                    }
                    Reply::Drop => drop(sock),
                    Reply::Hang => {
                        tokio::spawn(async move {
                            tokio::time::sleep(Duration::from_secs(30)).await;
                            drop(sock);
                        });
                    }
                }
            }
        });
        Self { base_url, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

async fn read_request(sock: &mut TcpStream) -> Option<Seen> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap_or(0))
                })
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                let n = sock.read(&mut chunk).await.ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).to_string();
            let mut lines = head.lines();
            let request_line = lines.next().unwrap_or_default().to_owned();
            let headers = lines
                .map(|l| {
                    let (k, v) = l.split_once(':').unwrap_or((l, ""));
                    format!("{}: {}", k.to_ascii_lowercase(), v.trim())
                })
                .collect::<Vec<_>>()
                .join("\n");
            return Some(Seen {
                request_line,
                headers,
                body,
            });
        }
    }
}

/// Serves the secret JSON; after `rotate()` it serves the rotated API key.
struct RotatingSecret(Arc<Mutex<&'static str>>);

#[async_trait::async_trait]
impl FetchSecret for RotatingSecret {
    async fn fetch(&self) -> Result<String, SecretError> {
        let key = *self.0.lock().unwrap();
        Ok(format!(
            r#"{{"apiToken":"{key}","linkSigningKey":"0123456789abcdef0123456789abcdef","webhookPathKey":"path-key-0123456789"}}"#
        ))
    }
}

fn client_with(base_url: &str, key: Arc<Mutex<&'static str>>) -> HttpOenGateway {
    let mut cfg = OenClientConfig::new(base_url, MerchantId::parse("ming").unwrap());
    cfg.request_timeout = Duration::from_millis(500);
    cfg.connect_timeout = Duration::from_millis(500);
    cfg.query_backoff = Duration::from_millis(5);
    let secrets = CachedSecrets::new(RotatingSecret(key), Duration::from_secs(300));
    HttpOenGateway::new(cfg, Arc::new(secrets)).unwrap()
}

fn client(base_url: &str) -> HttpOenGateway {
    client_with(base_url, Arc::new(Mutex::new(API_KEY)))
}

fn plan() -> Plan {
    Catalog::parse(
        r#"[{"id":"premium","description":"Premium plan","amount":500,"intervalMonths":1}]"#,
    )
    .unwrap()
    .lookup("premium")
    .unwrap()
    .clone()
}

fn charge_request() -> ChargeRequest {
    let p = plan();
    ChargeRequest {
        token: CardToken::parse(TOKEN).unwrap(),
        order_id: OrderId::for_period(&SubscriptionId::parse("Sub0000000000001").unwrap(), 3),
        amount: p.amount,
        product_details: p.product_details(),
        user_id: Some("cust-1".into()),
        payer: Default::default(),
        note: None,
        send_within: None,
    }
}

async fn charge_with(
    replies: Vec<Reply>,
) -> (Result<oen_pay::oen::ChargeReceipt, OenError>, Vec<Seen>) {
    let oen = FakeOen::start(replies, API_KEY).await;
    let r = client(&oen.base_url).charge(&charge_request()).await;
    (r, oen.seen())
}

#[tokio::test]
async fn charge_sends_the_contract_shape_and_reads_the_receipt() {
    let (r, seen) = charge_with(vec![json(
        200,
        r#"{"code":"S0000","data":{"id":"P20260928IJ90KL12","authCode":"831000"},"message":""}"#,
    )])
    .await;
    let receipt = r.unwrap();
    assert_eq!(receipt.transaction_number.as_str(), "P20260928IJ90KL12");
    assert_eq!(receipt.auth_code.as_deref(), Some("831000"));
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].request_line, "POST /token/transactions HTTP/1.1");
    assert!(seen[0]
        .headers
        .contains(&format!("authorization: Bearer {API_KEY}")));
    assert!(seen[0].headers.contains("content-type: application/json"));
    let body: serde_json::Value = serde_json::from_str(&seen[0].body).unwrap();
    assert_eq!(body["merchantId"], "ming");
    assert_eq!(body["amount"], 500);
    assert_eq!(body["currency"], "TWD");
    assert_eq!(body["token"], TOKEN);
    assert_eq!(body["orderId"], "Sub0000000000001P000003");
    assert_eq!(body["userId"], "cust-1");
    let details = body["productDetails"].as_array().unwrap();
    let sum: i64 = details
        .iter()
        .map(|d| d["quantity"].as_i64().unwrap() * d["unitPrice"].as_i64().unwrap())
        .sum();
    assert_eq!(sum, 500);
    for field in ["productionCode", "description", "unit"] {
        assert!(details[0][field].is_string(), "{field}");
    }
    // No payer: no e-invoicing fields at all.
    for field in ["userEmail", "userName", "invoiceInfo"] {
        assert!(body.get(field).is_none(), "{field}");
    }
}

#[tokio::test]
async fn a_charge_sends_the_payers_email_name_and_invoice_info_for_e_invoicing() {
    let oen = FakeOen::start(
        vec![json(
            200,
            r#"{"code":"S0000","data":{"id":"P20260928IJ90KL12"},"message":""}"#,
        )],
        API_KEY,
    )
    .await;
    let mut request = charge_request();
    request.payer = oen_pay::domain::Payer {
        email: Some(oen_pay::domain::Email::parse("wang@shop.example").unwrap()),
        name: Some(oen_pay::domain::PayerName::parse("王小明").unwrap()),
        invoice_info: Some(
            oen_pay::domain::InvoiceInfo::parse(r#"{"carrierType":"3J0002","carrierId":"/AB+12"}"#)
                .unwrap(),
        ),
    };
    assert!(!format!("{request:?}").contains("wang@"), "Debug redacts");
    client(&oen.base_url).charge(&request).await.unwrap();
    let body: serde_json::Value = serde_json::from_str(&oen.seen()[0].body).unwrap();
    assert_eq!(body["userEmail"], "wang@shop.example");
    assert_eq!(body["userName"], "王小明");
    assert_eq!(
        body["invoiceInfo"],
        serde_json::json!({"carrierType": "3J0002", "carrierId": "/AB+12"})
    );
}

#[tokio::test]
async fn auth_code_may_be_absent_and_unknown_fields_are_ignored() {
    let (r, _) = charge_with(vec![json(200, r#"{"code":"S0000","data":{"id":"P20260928IJ90KL12","later":{"x":1}},"message":null,"extra":1}"#)]).await;
    assert_eq!(r.unwrap().auth_code, None);
}

#[tokio::test]
async fn declines_are_classified_and_never_retried() {
    for (code, soft) in [
        ("T0001", true),
        ("T0004", true),
        ("E0001", true),
        ("T0002", false),
        ("T0003", false),
        ("T0005", false),
    ] {
        let (r, seen) = charge_with(vec![json(
            400,
            &format!(r#"{{"code":"{code}","data":{{}},"message":"declined"}}"#),
        )])
        .await;
        match r.unwrap_err() {
            OenError::SoftDecline { code: c, .. } if soft => assert_eq!(c, code),
            OenError::HardDecline { code: c, .. } if !soft => assert_eq!(c, code),
            other => panic!("{code}: {other:?}"),
        }
        assert_eq!(seen.len(), 1, "{code} was resent");
    }
}

#[tokio::test]
async fn unknown_outcomes_of_a_charge_are_never_resent() {
    let cases = vec![
        (
            "409 C026",
            json(
                409,
                r#"{"code":"C026","data":{},"message":"payment result unknown","retryable":false}"#,
            ),
        ),
        (
            "504 html",
            Reply::Http(
                504,
                "text/html",
                "<html><body>504 Gateway Time-out</body></html>".into(),
            ),
        ),
        (
            "500 F0001",
            json(
                500,
                r#"{"code":"F0001","data":{},"message":"system error"}"#,
            ),
        ),
        ("dropped after the request was read", Reply::Drop),
        ("timeout after sending", Reply::Hang),
        (
            "502 from a proxy",
            Reply::Http(502, "text/html", "<html>Bad Gateway</html>".into()),
        ),
        (
            "S0000 without data",
            json(200, r#"{"code":"S0000","message":""}"#),
        ),
    ];
    for (name, reply) in cases {
        let (r, seen) = charge_with(vec![reply]).await;
        assert!(matches!(r, Err(OenError::Unknown(_))), "{name}: {r:?}");
        assert_eq!(
            seen.len(),
            1,
            "{name}: a charge with an unknown outcome was resent"
        );
    }
}

#[tokio::test]
async fn configuration_errors_are_classified() {
    let cases = vec![
        (
            "V0001",
            json(
                400,
                r#"{"code":"V0001","data":{},"message":"PRODUCT_AMOUNT_NOT_MATCH"}"#,
            ),
            400,
        ),
        (
            "V0003",
            json(
                400,
                r#"{"code":"V0003","data":{},"message":"amount too large"}"#,
            ),
            400,
        ),
        (
            "K0001",
            json(
                400,
                r#"{"code":"K0001","data":{"detail":{"subCode":"X"}},"message":"risk"}"#,
            ),
            400,
        ),
        ("FORBIDDEN", json(403, r#"{"message":"Forbidden"}"#), 403),
    ];
    for (code, reply, status) in cases {
        let (r, seen) = charge_with(vec![reply]).await;
        match r.unwrap_err() {
            OenError::Config {
                code: c, status: s, ..
            } => {
                assert_eq!(c, code);
                assert_eq!(s, status);
            }
            other => panic!("{code}: {other:?}"),
        }
        assert_eq!(seen.len(), 1);
    }
}

#[tokio::test]
async fn plain_text_and_html_answers_are_unexpected_with_status_and_excerpt() {
    let oen = FakeOen::start(
        vec![Reply::Http(404, "text/plain", "404 page not found".into())],
        API_KEY,
    )
    .await;
    let err = client(&oen.base_url)
        .transaction(&TransactionId::parse("P20260928IJ90KL12").unwrap())
        .await
        .unwrap_err();
    assert_eq!(
        err,
        OenError::Unexpected {
            status: 404,
            excerpt: "404 page not found".into()
        }
    );
    let oen = FakeOen::start(
        vec![Reply::Http(
            405,
            "text/plain",
            "405 method not allowed".into(),
        )],
        API_KEY,
    )
    .await;
    let err = client(&oen.base_url)
        .refund(&RefundRequest {
            transaction_number: TransactionId::parse("P1").unwrap(),
            amount: None,
            reason: None,
            product_details: Vec::new(),
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err, OenError::Unexpected { status: 405, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("405"));
}

#[tokio::test]
async fn connection_refused_means_not_sent() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let r = client(&format!("http://{addr}"))
        .charge(&charge_request())
        .await;
    assert!(matches!(r, Err(OenError::NotSent(_))), "{r:?}");
}

#[tokio::test]
async fn queries_retry_transient_failures_with_bounded_attempts() {
    let ok = json(
        200,
        r#"{"code":"S0000","data":{"transactions":[{"id":"P20260928IJ90KL12","transactionId":"2HhngP9sVb3mK1xYdQe7Wc0RtUi","amount":500,"status":"charged","orderId":"o1","refundAmount":0,"newField":true}]},"message":""}"#,
    );
    let f0001 = json(
        500,
        r#"{"code":"F0001","data":{},"message":"system error"}"#,
    );
    let oen = FakeOen::start(vec![f0001.clone(), Reply::Drop, ok], API_KEY).await;
    let txs = client(&oen.base_url)
        .order_transactions(&OrderId::parse("o1").unwrap())
        .await
        .unwrap();
    assert_eq!(txs.len(), 1);
    assert!(txs[0].status.is_paid());
    assert_eq!(oen.seen().len(), 3);
    assert_eq!(
        oen.seen()[0].request_line,
        "GET /order/o1/transactions HTTP/1.1"
    );

    let oen = FakeOen::start(vec![f0001], API_KEY).await;
    let err = client(&oen.base_url)
        .order_transactions(&OrderId::parse("o1").unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(err, OenError::Transient { status: 500, .. }),
        "{err:?}"
    );
    assert_eq!(oen.seen().len(), 3, "bounded to three attempts");

    let oen = FakeOen::start(
        vec![json(
            200,
            r#"{"code":"S0000","data":{"transactions":[]},"message":""}"#,
        )],
        API_KEY,
    )
    .await;
    assert!(client(&oen.base_url)
        .order_transactions(&OrderId::parse("o1").unwrap())
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn unknown_transaction_is_a_configuration_error_not_retried() {
    let oen = FakeOen::start(
        vec![json(
            400,
            r#"{"code":"V0001","data":{},"message":"not found"}"#,
        )],
        API_KEY,
    )
    .await;
    let err = client(&oen.base_url)
        .transaction(&TransactionId::parse("P0").unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, OenError::Config { .. }));
    assert_eq!(oen.seen().len(), 1);
}

#[tokio::test]
async fn checkout_sends_both_url_keys_even_when_null() {
    let oen = FakeOen::start(
        vec![json(
            200,
            r#"{"code":"S0000","data":{"id":"2HhngP9sVb3mK1xYdQe7Wc0RtUi"},"message":""}"#,
        )],
        API_KEY,
    )
    .await;
    let id = client(&oen.base_url)
        .create_checkout(&CheckoutRequest {
            success_url: Some("https://shop.example/ok?ref=a".into()),
            failure_url: None,
            custom_id: Some(r#"{"r":"x"}"#.into()),
            payer_email: None,
            note: None,
        })
        .await
        .unwrap();
    assert_eq!(id.as_str(), "2HhngP9sVb3mK1xYdQe7Wc0RtUi");
    let body: serde_json::Value = serde_json::from_str(&oen.seen()[0].body).unwrap();
    assert_eq!(body["merchantId"], "ming");
    assert_eq!(body["successUrl"], "https://shop.example/ok?ref=a");
    assert!(body.as_object().unwrap().contains_key("failureUrl"));
    assert!(body["failureUrl"].is_null());
    assert!(!body.as_object().unwrap().contains_key("payerEmail"));
}

#[tokio::test]
async fn refunds_send_amount_and_classify_a_second_refund() {
    let oen = FakeOen::start(
        vec![
            json(200, r#"{"code":"S0000","data":{},"message":""}"#),
            json(
                400,
                r#"{"code":"V0002","data":{},"message":"already refunded"}"#,
            ),
        ],
        API_KEY,
    )
    .await;
    let c = client(&oen.base_url);
    let req = RefundRequest {
        transaction_number: TransactionId::parse("P20260928IJ90KL12").unwrap(),
        amount: Some(Amount::new(200).unwrap()),
        reason: Some("customer".into()),
        product_details: vec![ProductDetail {
            production_code: "BAG".into(),
            description: "Bag".into(),
            quantity: 2,
            unit: "item".into(),
            unit_price: 100,
        }],
    };
    c.refund(&req).await.unwrap();
    let err = c.refund(&req).await.unwrap_err();
    assert!(
        matches!(err, OenError::State { ref code, .. } if code == "V0002"),
        "{err:?}"
    );
    let seen = oen.seen();
    assert_eq!(
        seen[0].request_line,
        "POST /refunds/P20260928IJ90KL12 HTTP/1.1"
    );
    let body: serde_json::Value = serde_json::from_str(&seen[0].body).unwrap();
    assert_eq!(body["amount"], 200);
    assert_eq!(body["merchantId"], "ming");
    assert_eq!(
        body["productDetails"],
        serde_json::json!([{"productionCode": "BAG", "description": "Bag", "quantity": 2,
                            "unit": "item", "unitPrice": 100}])
    );
}

/// A client whose cached key has just been rotated in the secret store: its next call is
/// refused with A0001, and a re-read finds the new key (which the fake Oen accepts).
async fn client_after_rotation() -> (FakeOen, HttpOenGateway) {
    let key = Arc::new(Mutex::new(API_KEY));
    let oen = FakeOen::start(
        vec![json(
            200,
            r#"{"code":"S0000","data":{"id":"P20260928IJ90KL12"},"message":""}"#,
        )],
        ROTATED_KEY,
    )
    .await;
    let c = client_with(&oen.base_url, key.clone());
    let err = c
        .transaction(&TransactionId::parse("P1").unwrap())
        .await
        .unwrap_err();
    assert!(err.is_auth_failure());
    *key.lock().unwrap() = ROTATED_KEY;
    (oen, c)
}

#[tokio::test]
async fn a_rotated_key_is_reread_once_and_the_call_succeeds() {
    let (oen, c) = client_after_rotation().await;
    let receipt = c.charge(&charge_request()).await.unwrap();
    assert_eq!(receipt.transaction_number.as_str(), "P20260928IJ90KL12");
    let seen = oen.seen();
    let charges: Vec<_> = seen
        .iter()
        .filter(|s| s.request_line.starts_with("POST"))
        .collect();
    assert_eq!(
        charges.len(),
        2,
        "one refused with the old key, one accepted with the new"
    );
    assert!(charges[1].headers.contains(ROTATED_KEY));
}

#[tokio::test]
async fn no_resend_after_a_rotated_key_leaves_past_the_send_deadline() {
    // The charge is refused with A0001, and by then its send window is spent.
    let (oen, c) = client_after_rotation().await;
    let mut late = charge_request();
    late.send_within = Some(Duration::ZERO);
    let r = c.charge(&late).await;
    assert!(matches!(&r, Err(OenError::NotSent(_))), "{r:?}");
    let posts = oen
        .seen()
        .iter()
        .filter(|s| s.request_line.starts_with("POST"))
        .count();
    assert_eq!(posts, 1, "the A0001 resend would have left too late");
}

#[tokio::test]
async fn a_wrong_key_that_stays_wrong_is_a_configuration_error() {
    let oen = FakeOen::start(
        vec![json(200, r#"{"code":"S0000","data":{},"message":""}"#)],
        ROTATED_KEY,
    )
    .await;
    let r = client(&oen.base_url).charge(&charge_request()).await;
    assert!(matches!(&r, Err(e) if e.is_auth_failure()), "{r:?}");
    assert_eq!(
        oen.seen().len(),
        2,
        "one call, one retry after the refresh, no more"
    );
}

/// A writer that keeps everything the subscriber prints.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One global subscriber for this test binary: a scoped one could miss events, because
/// tracing caches each call site's interest process-wide.
fn captured_logs() -> Captured {
    static CAPTURED: std::sync::OnceLock<Captured> = std::sync::OnceLock::new();
    CAPTURED
        .get_or_init(|| {
            let captured = Captured::default();
            let sink = captured.clone();
            let subscriber = tracing_subscriber::fmt()
                .with_max_level(tracing::Level::TRACE)
                .with_writer(move || sink.clone())
                .finish();
            tracing::subscriber::set_global_default(subscriber).unwrap();
            tracing::callsite::rebuild_interest_cache();
            captured
        })
        .clone()
}

#[tokio::test]
async fn no_log_line_or_error_carries_the_token_or_the_api_key() {
    let captured = captured_logs();
    let mut errors = Vec::new();
    for reply in [
        json(
            400,
            &format!(r#"{{"code":"T0004","data":{{}},"message":"card {TOKEN} declined"}}"#),
        ),
        Reply::Http(
            500,
            "text/html",
            format!("<html>token={TOKEN} key={API_KEY}</html>"),
        ),
        json(
            409,
            r#"{"code":"C026","data":{},"message":"unknown","retryable":false}"#,
        ),
        Reply::Drop,
    ] {
        let oen = FakeOen::start(vec![reply], API_KEY).await;
        let c = client(&oen.base_url);
        if let Err(e) = c.charge(&charge_request()).await {
            errors.push(format!("{e} {e:?}"));
        }
        let _ = c
            .order_transactions(&OrderId::parse("o1").unwrap())
            .await
            .map_err(|e| errors.push(e.to_string()));
    }
    errors.push(format!("{:?}", charge_request()));
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(!logs.is_empty(), "the subscriber captured nothing");
    for text in errors.iter().chain(std::iter::once(&logs)) {
        assert!(!text.contains(TOKEN), "token leaked: {text}");
        assert!(!text.contains(API_KEY), "API key leaked: {text}");
    }
}

// ---- GET /transactions (the daily reconciliation's listing) --------------------------------

fn list_query(page: Option<&str>) -> TransactionListQuery {
    TransactionListQuery {
        start: oen_pay::chrono::NaiveDate::from_ymd_opt(2026, 11, 29).unwrap(),
        end: oen_pay::chrono::NaiveDate::from_ymd_opt(2026, 11, 29).unwrap(),
        page: page.and_then(PageToken::new),
    }
}

const LISTED: &str = r#"{"id":"P20261129IJ90KL12","transactionId":"2HhngP9sVb3mK1xYdQe7Wc0RtUi","amount":500,"status":"charged","orderId":"o1","refundAmount":0,"createdAt":"2026-11-29T04:00:00.000Z"}"#;

#[tokio::test]
async fn a_transaction_page_sends_the_taipei_dates_and_the_page_and_reads_the_next_one() {
    let body = format!(
        r#"{{"code":"S0000","data":{{"transactions":[{LISTED}],"page":"P20261129IJ90KL12"}},"message":""}}"#
    );
    let oen = FakeOen::start(vec![json(200, &body)], API_KEY).await;

    let page = client(&oen.base_url)
        .list_transactions(&list_query(Some("P2026 1129/x")))
        .await
        .unwrap();

    assert_eq!(
        oen.seen()[0].request_line,
        "GET /transactions?start=2026-11-29&end=2026-11-29&page=P2026+1129%2Fx HTTP/1.1"
    );
    assert_eq!(page.transactions.len(), 1);
    assert_eq!(page.transactions[0].order_id.as_deref(), Some("o1"));
    assert_eq!(page.next, PageToken::new("P20261129IJ90KL12"));
}

#[tokio::test]
async fn the_last_page_names_no_next_page_whether_null_absent_empty_and_a_number_is_a_token() {
    for (page, next) in [
        (r#","page":null"#, None),
        ("", None),
        (r#","page":"""#, None),
        (r#","page":2"#, PageToken::new("2")),
    ] {
        let body = format!(
            r#"{{"code":"S0000","data":{{"transactions":[{LISTED}]{page}}},"message":""}}"#
        );
        let oen = FakeOen::start(vec![json(200, &body)], API_KEY).await;
        let got = client(&oen.base_url)
            .list_transactions(&list_query(None))
            .await
            .unwrap();
        assert_eq!(got.next, next, "{page}");
        assert_eq!(
            oen.seen()[0].request_line,
            "GET /transactions?start=2026-11-29&end=2026-11-29 HTTP/1.1"
        );
    }
}

#[tokio::test]
async fn a_page_that_would_not_advance_or_does_not_read_is_unexpected() {
    let cases = [
        (
            format!(
                r#"{{"code":"S0000","data":{{"transactions":[{LISTED}],"page":"same"}},"message":""}}"#
            ),
            Some("same"),
            "named itself as the next page",
        ),
        (
            r#"{"code":"S0000","data":{"transactions":[],"page":"more"},"message":""}"#.into(),
            None,
            "an empty transaction page named a next page",
        ),
        (
            r#"{"code":"S0000","data":{"page":null},"message":""}"#.into(),
            None,
            "missing field `transactions`",
        ),
        (
            r#"{"code":"S0000","data":{"transactions":[{"id":"P1","status":"charged"}]},"message":""}"#.into(),
            None,
            "missing field `amount`",
        ),
    ];
    for (body, page, reason) in cases {
        let oen = FakeOen::start(vec![json(200, &body)], API_KEY).await;
        let err = client(&oen.base_url)
            .list_transactions(&list_query(page))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, OenError::Unexpected { status: 200, excerpt } if excerpt.contains(reason)),
            "{body}: {err:?}"
        );
    }
}

#[tokio::test]
async fn a_listing_answered_in_plain_text_or_a_system_error_is_classified() {
    let oen = FakeOen::start(
        vec![Reply::Http(404, "text/plain", "404 page not found".into())],
        API_KEY,
    )
    .await;
    let err = client(&oen.base_url)
        .list_transactions(&list_query(None))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        OenError::Unexpected {
            status: 404,
            excerpt: "404 page not found".into()
        }
    );
    let oen = FakeOen::start(
        vec![json(
            500,
            r#"{"code":"F0001","data":{},"message":"Pagination parse failed"}"#,
        )],
        API_KEY,
    )
    .await;
    let err = client(&oen.base_url)
        .list_transactions(&list_query(Some("bogus")))
        .await
        .unwrap_err();
    assert!(
        matches!(err, OenError::Transient { status: 500, .. }),
        "{err:?}"
    );
    assert_eq!(oen.seen().len(), 3, "a query: retried, bounded");
}
