//! Signed start links: the merchant's backend mints a link for a logged-in customer, and
//! `checkout-start` accepts it only with a valid signature before its expiry.
//!
//! The signature is the lowercase hex HMAC-SHA256, keyed with the secret's `linkSigningKey`, of
//! the canonical string: every query parameter except `sig`, sorted by name, each written
//! `name=value` with RFC 3986 percent-encoding (everything but `A–Z a–z 0–9 - . _ ~` as `%XX`,
//! upper-case hex, UTF-8), joined by `&`. `expires` is Unix seconds, and at most the
//! configured maximum lifetime (`LINK_MAX_TTL`) after the link is opened.
//!
//! Optional parameters describe the payer for Oen's e-invoicing ([`Payer`]): `email` (checked
//! as an address, required when the merchant issues e-invoices: `EINVOICE=true`, see
//! [`StartLink::require_invoice_email`]), `name` (1 to 100 characters) and `invoice`, the
//! `invoiceInfo` object Oen receives with every charge, as compact JSON of at most 512 bytes.
//! Being signed, none of them can be changed by the customer who holds the link.
//!
//! A verified link carries a stable [`LinkId`], the hash of its signature: the same link opened
//! twice has one id (however its query is spelled), so `checkout-start` can let it open one
//! binding session and answer a replay from that session instead of calling Oen again.

use chrono::{DateTime, Duration, Utc};
use hmac::{Hmac, KeyInit, Mac};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use thiserror::Error;

use crate::domain::{Catalog, CustomerId, Email, InvoiceInfo, LinkId, Payer, PayerName, PlanId};

/// RFC 3986 unreserved characters stay; everything else is encoded.
const RFC3986: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The longest start-link query we read; anything longer is refused before any work.
pub const MAX_QUERY_LEN: usize = 2048;

/// A verified start link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartLink {
    /// The link's stable id (see [`LinkId`]).
    pub id: LinkId,
    pub customer: CustomerId,
    pub plan: PlanId,
    /// `email`, `name` and `invoice`, validated.
    pub payer: Payer,
    pub expires: DateTime<Utc>,
}

impl StartLink {
    /// A merchant that issues e-invoices (`EINVOICE=true`) needs the payer's e-mail on every
    /// charge, so its links must carry one: refused before any session or call to Oen.
    pub fn require_invoice_email(&self, einvoice: bool) -> Result<(), LinkError> {
        if einvoice && self.payer.email.is_none() {
            return Err(LinkError::Invalid(
                "email is missing: this shop issues e-invoices, so its start links must carry the customer's e-mail".into(),
            ));
        }
        Ok(())
    }
}

/// The payer parameters of a start link ([`mint_with`]), unchecked: `verify` checks them.
#[derive(Debug, Clone, Copy, Default)]
pub struct LinkPayer<'a> {
    pub email: Option<&'a str>,
    pub name: Option<&'a str>,
    /// The `invoiceInfo` JSON object, as text.
    pub invoice: Option<&'a str>,
}

#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum LinkError {
    /// 403: missing or wrong signature.
    #[error("the start link's signature is missing or does not match")]
    BadSignature,
    /// 410: the link was valid once.
    #[error("the start link expired at {0}")]
    Expired(DateTime<Utc>),
    /// 400: the link expires further ahead than links may live; refused so that no link stays
    /// usable for long.
    #[error(
        "the start link lives too long: it expires at {expires}, but a link may expire at most {} seconds after it is opened",
        max_ttl.num_seconds()
    )]
    LivesTooLong {
        expires: DateTime<Utc>,
        max_ttl: Duration,
    },
    /// 400: a signed link with content we cannot serve.
    #[error("the start link is invalid: {0}")]
    Invalid(String),
}

fn canonical(params: &[(String, String)]) -> String {
    let mut pairs: Vec<(String, String)> = params
        .iter()
        .filter(|(k, _)| k != "sig")
        .map(|(k, v)| {
            (
                utf8_percent_encode(k, RFC3986).to_string(),
                utf8_percent_encode(v, RFC3986).to_string(),
            )
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn mac(key: &[u8], canonical: &str) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(canonical.as_bytes());
    mac
}

/// The signature of a set of query parameters (`sig` itself is ignored).
pub fn sign(key: &[u8], params: &[(String, String)]) -> String {
    hex::encode(mac(key, &canonical(params)).finalize().into_bytes())
}

/// Mints a start link: `{base_url}?customer=…&plan=…&expires=…[&email=…]&sig=…`.
pub fn mint(
    base_url: &str,
    key: &[u8],
    customer: &CustomerId,
    plan: &PlanId,
    expires: DateTime<Utc>,
    email: Option<&str>,
) -> String {
    let payer = LinkPayer {
        email,
        ..LinkPayer::default()
    };
    mint_with(base_url, key, customer, plan, expires, payer)
}

/// Mints a start link with payer parameters:
/// `{base_url}?customer=…&plan=…&expires=…[&email=…][&name=…][&invoice=…]&sig=…`.
pub fn mint_with(
    base_url: &str,
    key: &[u8],
    customer: &CustomerId,
    plan: &PlanId,
    expires: DateTime<Utc>,
    payer: LinkPayer,
) -> String {
    let mut params = vec![
        ("customer".to_owned(), customer.to_string()),
        ("plan".to_owned(), plan.to_string()),
        ("expires".to_owned(), expires.timestamp().to_string()),
    ];
    for (name, value) in [
        ("email", payer.email),
        ("name", payer.name),
        ("invoice", payer.invoice),
    ] {
        if let Some(v) = value {
            params.push((name.to_owned(), v.to_owned()));
        }
    }
    let sig = sign(key, &params);
    params.push(("sig".to_owned(), sig));
    let query = params
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                utf8_percent_encode(k, RFC3986),
                utf8_percent_encode(v, RFC3986)
            )
        })
        .collect::<Vec<_>>()
        .join("&");
    let sep = if base_url.contains('?') { '&' } else { '?' };
    format!("{base_url}{sep}{query}")
}

/// What a start link accepts as `email`: at most 254 characters, an `@`, no space or control
/// character (Oen's page asks the customer to confirm it).
pub fn is_email(e: &str) -> bool {
    e.len() <= 254 && e.contains('@') && !e.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Verifies a raw query string: signature first (so nothing about an unsigned link is
/// revealed), then expiry and lifetime (`expires` at most `max_ttl` after `now`), then content.
pub fn verify(
    raw_query: &str,
    key: &[u8],
    plans: &Catalog,
    now: DateTime<Utc>,
    max_ttl: Duration,
) -> Result<StartLink, LinkError> {
    if raw_query.len() > MAX_QUERY_LEN {
        return Err(LinkError::Invalid(format!(
            "the query is longer than {MAX_QUERY_LEN} bytes"
        )));
    }
    let params: Vec<(String, String)> = form_urlencoded::parse(raw_query.as_bytes())
        .into_owned()
        .collect();
    let sigs: Vec<&str> = params
        .iter()
        .filter(|(k, _)| k == "sig")
        .map(|(_, v)| v.as_str())
        .collect();
    let [sig] = sigs.as_slice() else {
        return Err(LinkError::BadSignature);
    };
    let given = hex::decode(sig).map_err(|_| LinkError::BadSignature)?;
    let expected = mac(key, &canonical(&params)).finalize().into_bytes();
    if given.len() != expected.len() || !bool::from(given.as_slice().ct_eq(expected.as_slice())) {
        return Err(LinkError::BadSignature);
    }
    let one = |name: &str| -> Result<Option<&str>, LinkError> {
        let mut values = params
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str());
        let first = values.next();
        if values.next().is_some() {
            return Err(LinkError::Invalid(format!("{name} appears more than once")));
        }
        Ok(first)
    };
    let required =
        |name: &str| one(name)?.ok_or_else(|| LinkError::Invalid(format!("{name} is missing")));
    let expires_secs: i64 = required("expires")?
        .parse()
        .map_err(|_| LinkError::Invalid("expires must be Unix seconds".into()))?;
    let expires = DateTime::from_timestamp(expires_secs, 0)
        .ok_or_else(|| LinkError::Invalid("expires is out of range".into()))?;
    if now > expires {
        return Err(LinkError::Expired(expires));
    }
    if expires - now > max_ttl {
        return Err(LinkError::LivesTooLong { expires, max_ttl });
    }
    let customer =
        CustomerId::parse(required("customer")?).map_err(|e| LinkError::Invalid(e.to_string()))?;
    let plan = plans
        .lookup(required("plan")?)
        .map_err(|e| LinkError::Invalid(e.to_string()))?
        .id
        .clone();
    let invalid = |e: crate::domain::PayerError| LinkError::Invalid(e.to_string());
    let payer = Payer {
        email: one("email")?
            .map(Email::parse)
            .transpose()
            .map_err(invalid)?,
        name: one("name")?
            .map(PayerName::parse)
            .transpose()
            .map_err(invalid)?,
        invoice_info: one("invoice")?
            .map(InvoiceInfo::parse)
            .transpose()
            .map_err(invalid)?,
    };
    Ok(StartLink {
        id: LinkId::of_signature(expected.as_slice()),
        customer,
        plan,
        payer,
        expires,
    })
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";
    const TTL: Duration = Duration::hours(24);

    fn plans() -> Catalog {
        Catalog::parse(r#"[{"id":"premium","description":"P","amount":500,"intervalMonths":1}]"#)
            .unwrap()
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    fn query_of(link: &str) -> &str {
        link.split_once('?').unwrap().1
    }

    fn link(customer: &str, plan: &str, email: Option<&str>) -> String {
        link_expiring(customer, plan, email, now() + Duration::minutes(5))
    }

    fn link_expiring(
        customer: &str,
        plan: &str,
        email: Option<&str>,
        expires: DateTime<Utc>,
    ) -> String {
        let mut params = vec![
            ("customer".to_owned(), customer.to_owned()),
            ("plan".to_owned(), plan.to_owned()),
            ("expires".to_owned(), expires.timestamp().to_string()),
        ];
        if let Some(e) = email {
            params.push(("email".into(), e.into()));
        }
        let sig = sign(KEY, &params);
        params.push(("sig".into(), sig));
        format!(
            "https://pay.example/checkout/start?{}",
            form_urlencoded::Serializer::new(String::new())
                .extend_pairs(&params)
                .finish()
        )
    }

    #[test]
    fn a_minted_link_verifies() {
        let l = mint(
            "https://pay.example/checkout/start",
            KEY,
            &CustomerId::parse("cust-1").unwrap(),
            &PlanId::parse("premium").unwrap(),
            now() + Duration::minutes(5),
            Some("a+b@shop.example"),
        );
        let v = verify(query_of(&l), KEY, &plans(), now(), TTL).unwrap();
        assert_eq!(v.customer.as_str(), "cust-1");
        assert_eq!(
            v.payer.email.as_ref().map(|e| e.as_str()),
            Some("a+b@shop.example")
        );
        assert_eq!(v.payer.name, None);
        assert_eq!(v.payer.invoice_info, None);
    }

    fn payer_link(payer: LinkPayer) -> Result<StartLink, LinkError> {
        let l = mint_with(
            "https://pay.example/checkout/start",
            KEY,
            &CustomerId::parse("cust-1").unwrap(),
            &PlanId::parse("premium").unwrap(),
            now() + Duration::minutes(5),
            payer,
        );
        verify(query_of(&l), KEY, &plans(), now(), TTL)
    }

    #[test]
    fn a_link_carries_the_payers_name_and_invoice_info_signed() {
        let v = payer_link(LinkPayer {
            email: Some("wang@shop.example"),
            name: Some("王小明"),
            invoice: Some(r#"{"carrierType":"3J0002","carrierId":"/ABC+123"}"#),
        })
        .unwrap();
        assert_eq!(v.payer.name.as_ref().unwrap().as_str(), "王小明");
        assert_eq!(
            v.payer.invoice_info.unwrap().to_json(),
            serde_json::json!({"carrierType": "3J0002", "carrierId": "/ABC+123"})
        );
    }

    #[test]
    fn a_malformed_payer_parameter_is_a_precise_refusal() {
        let err = |payer| payer_link(payer).unwrap_err().to_string();
        let e = err(LinkPayer {
            email: Some("wang@localhost"),
            ..LinkPayer::default()
        });
        assert_eq!(
            e,
            "the start link is invalid: email is not an e-mail address: the domain after @ has no dot"
        );
        assert!(!e.contains("wang"), "{e}");
        let e = err(LinkPayer {
            invoice: Some("[1]"),
            ..LinkPayer::default()
        });
        assert_eq!(
            e,
            "the start link is invalid: invoice must be a JSON object"
        );
        let e = err(LinkPayer {
            name: Some(" "),
            ..LinkPayer::default()
        });
        assert_eq!(e, "the start link is invalid: name is empty");
    }

    #[test]
    fn an_einvoice_shop_refuses_a_link_without_email() {
        let without = payer_link(LinkPayer {
            name: Some("Wang"),
            ..LinkPayer::default()
        })
        .unwrap();
        assert_eq!(without.require_invoice_email(false), Ok(()));
        let refused = without.require_invoice_email(true).unwrap_err();
        assert!(
            refused.to_string().contains("email is missing"),
            "{refused}"
        );
        let with = payer_link(LinkPayer {
            email: Some("wang@shop.example"),
            ..LinkPayer::default()
        })
        .unwrap();
        assert_eq!(with.require_invoice_email(true), Ok(()));
    }

    #[test]
    fn canonical_string_is_sorted_and_rfc3986_encoded() {
        let params = vec![
            ("plan".to_owned(), "premium".to_owned()),
            ("email".to_owned(), "a b+c@x.tw".to_owned()),
            ("customer".to_owned(), "c~1.x_y-z".to_owned()),
            ("sig".to_owned(), "ignored".to_owned()),
        ];
        assert_eq!(
            canonical(&params),
            "customer=c~1.x_y-z&email=a%20b%2Bc%40x.tw&plan=premium"
        );
        // Known-answer: HMAC-SHA256("key", "customer=c1&expires=1800000000&plan=premium").
        let kat = sign(
            b"key",
            &[
                ("plan".into(), "premium".into()),
                ("customer".into(), "c1".into()),
                ("expires".into(), "1800000000".into()),
            ],
        );
        assert_eq!(kat.len(), 64);
        assert_eq!(
            kat,
            hex::encode(
                mac(b"key", "customer=c1&expires=1800000000&plan=premium")
                    .finalize()
                    .into_bytes()
            )
        );
    }

    #[test]
    fn a_link_signed_by_another_encoder_verifies() {
        // form encoding writes a space as '+'; the canonical string does not care.
        let l = link("cust-1", "premium", Some("x y@shop.example"));
        assert!(l.contains('+'));
        assert!(
            verify(query_of(&l), KEY, &plans(), now(), TTL).is_err(),
            "a space is not a valid e-mail"
        );
        let l = link("cust-1", "premium", Some("x@shop.example"));
        assert!(verify(query_of(&l), KEY, &plans(), now(), TTL).is_ok());
    }

    #[test]
    fn tampering_or_missing_signature_is_refused() {
        let l = link("cust-1", "premium", None);
        let q = query_of(&l);
        assert_eq!(
            verify(&q.replace("cust-1", "cust-2"), KEY, &plans(), now(), TTL),
            Err(LinkError::BadSignature)
        );
        assert_eq!(
            verify(
                q,
                b"another key another key another k",
                &plans(),
                now(),
                TTL
            ),
            Err(LinkError::BadSignature)
        );
        let unsigned = q.split("&sig=").next().unwrap();
        assert_eq!(
            verify(unsigned, KEY, &plans(), now(), TTL),
            Err(LinkError::BadSignature)
        );
        assert_eq!(
            verify(&format!("{unsigned}&sig=zz"), KEY, &plans(), now(), TTL),
            Err(LinkError::BadSignature)
        );
        assert_eq!(
            verify(&format!("{q}&sig=00"), KEY, &plans(), now(), TTL),
            Err(LinkError::BadSignature)
        );
        assert_eq!(
            verify(&format!("{q}&extra=1"), KEY, &plans(), now(), TTL),
            Err(LinkError::BadSignature)
        );
    }

    #[test]
    fn expired_links_are_refused_after_the_signature_check() {
        let l = link("cust-1", "premium", None);
        let later = now() + Duration::minutes(6);
        assert!(matches!(
            verify(query_of(&l), KEY, &plans(), later, TTL),
            Err(LinkError::Expired(_))
        ));
    }

    #[test]
    fn signed_links_with_bad_content_are_invalid() {
        for (customer, plan) in [("cust 1", "premium"), ("cust-1", "gold"), ("", "premium")] {
            let l = link(customer, plan, None);
            assert!(
                matches!(
                    verify(query_of(&l), KEY, &plans(), now(), TTL),
                    Err(LinkError::Invalid(_))
                ),
                "{customer} {plan}"
            );
        }
        let err = verify(
            query_of(&link("cust-1", "gold", None)),
            KEY,
            &plans(),
            now(),
            TTL,
        )
        .unwrap_err();
        assert!(err.to_string().contains("gold"), "{err}");
    }

    #[test]
    fn links_that_live_longer_than_the_maximum_are_refused() {
        let longest = link_expiring("cust-1", "premium", None, now() + TTL);
        assert!(verify(query_of(&longest), KEY, &plans(), now(), TTL).is_ok());
        let expires = now() + TTL + Duration::seconds(1);
        let too_long = link_expiring("cust-1", "premium", None, expires);
        let err = verify(query_of(&too_long), KEY, &plans(), now(), TTL).unwrap_err();
        assert_eq!(
            err,
            LinkError::LivesTooLong {
                expires,
                max_ttl: TTL
            }
        );
        let message = err.to_string();
        assert!(
            message.contains("lives too long") && message.contains("86400 seconds"),
            "{message}"
        );
        // The same link is fine a second later, and the signature is still checked first.
        assert!(verify(
            query_of(&too_long),
            KEY,
            &plans(),
            now() + Duration::seconds(1),
            TTL
        )
        .is_ok());
        assert_eq!(
            verify(
                &query_of(&too_long).replace("cust-1", "cust-2"),
                KEY,
                &plans(),
                now(),
                TTL
            ),
            Err(LinkError::BadSignature)
        );
    }

    #[test]
    fn one_link_has_one_id_however_its_query_is_spelled() {
        let l = link("cust-1", "premium", Some("a@shop.example"));
        let q = query_of(&l);
        let id = verify(q, KEY, &plans(), now(), TTL).unwrap().id;
        let sig = q.split("sig=").nth(1).unwrap();
        let mut reordered: Vec<&str> = q.split('&').collect();
        reordered.reverse();
        let respelled = reordered
            .join("&")
            .replace(sig, &sig.to_uppercase())
            .replace("%40", "@");
        assert_ne!(respelled, q);
        assert_eq!(
            verify(&respelled, KEY, &plans(), now(), TTL).unwrap().id,
            id
        );
        assert!(!id.as_str().contains(sig), "the id is not the signature");
        let later = link_expiring("cust-1", "premium", None, now() + Duration::minutes(6));
        assert_ne!(
            verify(query_of(&later), KEY, &plans(), now(), TTL)
                .unwrap()
                .id,
            id
        );
    }

    #[test]
    fn a_signed_parameter_of_the_merchants_own_makes_another_link() {
        let l = link("cust-1", "premium", None);
        let id = verify(query_of(&l), KEY, &plans(), now(), TTL).unwrap().id;
        let mut params: Vec<(String, String)> = form_urlencoded::parse(query_of(&l).as_bytes())
            .into_owned()
            .filter(|(k, _)| k != "sig")
            .collect();
        params.push(("n".into(), "r4nd0m".into()));
        let sig = sign(KEY, &params);
        params.push(("sig".into(), sig));
        let query = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&params)
            .finish();
        let other = verify(&query, KEY, &plans(), now(), TTL).unwrap();
        assert_eq!(other.customer.as_str(), "cust-1");
        assert_ne!(other.id, id);
    }
}
