//! Who pays, as Oen's e-invoicing needs it: the customer's e-mail and name (`userEmail`,
//! `userName` of `POST /token/transactions`, required when the merchant's domain issues
//! e-invoices) and the merchant's `invoiceInfo` for the customer, passed through unchanged.
//!
//! They come from the signed start link (`email`, `name`, `invoice`), are kept with the binding
//! session, then with the card and the subscription the binding sets up, and go with every
//! charge of them. They are personal data: `Debug` shows none of them, and no log line at info
//! level carries them.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The longest e-mail address (RFC 5321's path limit less its brackets).
pub const MAX_EMAIL_LEN: usize = 254;
/// The longest payer name, in characters.
pub const MAX_NAME_CHARS: usize = 100;
/// The longest `invoiceInfo`, in bytes of compact JSON.
pub const MAX_INVOICE_INFO_BYTES: usize = 512;

#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum PayerError {
    /// Says what is wrong without repeating the value (it is personal data).
    #[error("email is not an e-mail address: {0}")]
    Email(&'static str),
    #[error("name {0}")]
    Name(&'static str),
    #[error("invoice {0}")]
    InvoiceInfo(String),
}

/// An e-mail address as Oen's invoicing takes it: `local@domain`, ASCII, the local part of
/// RFC 5322 dot-atoms (no quoted strings), the domain of DNS host labels with at least one dot
/// (internationalised domains in their `xn--` form).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, PayerError> {
        let bad = PayerError::Email;
        if raw.is_empty() {
            return Err(bad("it is empty"));
        }
        if raw.len() > MAX_EMAIL_LEN {
            return Err(bad("it is longer than 254 characters"));
        }
        if !raw.is_ascii() {
            return Err(bad(
                "it has non-ASCII characters (write an international domain as xn--…)",
            ));
        }
        let Some((local, domain)) = raw.rsplit_once('@') else {
            return Err(bad("it has no @"));
        };
        if local.contains('@') {
            return Err(bad("it has more than one @"));
        }
        if local.is_empty() || local.len() > 64 {
            return Err(bad("the part before @ must have 1 to 64 characters"));
        }
        const SPECIALS: &str = "!#$%&'*+/=?^_`{|}~-.";
        if !local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || SPECIALS.contains(c))
        {
            return Err(bad(
                "the part before @ has a character addresses cannot have",
            ));
        }
        if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
            return Err(bad(
                "the part before @ starts or ends with a dot, or has two in a row",
            ));
        }
        let labels: Vec<&str> = domain.split('.').collect();
        if labels.len() < 2 {
            return Err(bad("the domain after @ has no dot"));
        }
        for label in &labels {
            let fine = (1..=63).contains(&label.len())
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-');
            if !fine {
                return Err(bad(
                    "the domain after @ must be names of letters, digits and inner hyphens, joined by single dots",
                ));
            }
        }
        if labels
            .last()
            .is_some_and(|tld| tld.chars().all(|c| c.is_ascii_digit()))
        {
            return Err(bad("the domain after @ ends in a number"));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Email {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Email(<redacted>)")
    }
}

impl TryFrom<String> for Email {
    type Error = PayerError;
    fn try_from(s: String) -> Result<Self, PayerError> {
        Self::parse(&s)
    }
}

impl From<Email> for String {
    fn from(e: Email) -> String {
        e.0
    }
}

/// The payer's name: 1 to [`MAX_NAME_CHARS`] characters, trimmed, no control characters.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PayerName(String);

impl PayerName {
    pub fn parse(raw: &str) -> Result<Self, PayerError> {
        let name = raw.trim();
        if name.is_empty() {
            return Err(PayerError::Name("is empty"));
        }
        if name.chars().count() > MAX_NAME_CHARS {
            return Err(PayerError::Name("is longer than 100 characters"));
        }
        if name.chars().any(char::is_control) {
            return Err(PayerError::Name("has control characters"));
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for PayerName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PayerName(<redacted>)")
    }
}

impl TryFrom<String> for PayerName {
    type Error = PayerError;
    fn try_from(s: String) -> Result<Self, PayerError> {
        Self::parse(&s)
    }
}

impl From<PayerName> for String {
    fn from(n: PayerName) -> String {
        n.0
    }
}

/// The merchant's `invoiceInfo` for a customer (a carrier, a tax id, a donation code: Oen's
/// business, not ours): a JSON object of at most [`MAX_INVOICE_INFO_BYTES`] bytes, kept as its
/// compact JSON text and sent to Oen as that object.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct InvoiceInfo(String);

impl InvoiceInfo {
    pub fn parse(raw: &str) -> Result<Self, PayerError> {
        let invalid = |why: &str| PayerError::InvoiceInfo(why.to_owned());
        let value: serde_json::Value = serde_json::from_str(raw)
            .map_err(|e| invalid(&format!("is not JSON ({})", e.classify_name())))?;
        if !value.is_object() {
            return Err(invalid("must be a JSON object"));
        }
        let compact = value.to_string();
        if compact.len() > MAX_INVOICE_INFO_BYTES {
            return Err(PayerError::InvoiceInfo(format!(
                "is longer than {MAX_INVOICE_INFO_BYTES} bytes of JSON"
            )));
        }
        Ok(Self(compact))
    }

    /// The object Oen receives.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::from_str(&self.0).unwrap_or_default()
    }
}

impl std::fmt::Debug for InvoiceInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InvoiceInfo(<redacted>)")
    }
}

impl TryFrom<String> for InvoiceInfo {
    type Error = PayerError;
    fn try_from(s: String) -> Result<Self, PayerError> {
        Self::parse(&s)
    }
}

impl From<InvoiceInfo> for String {
    fn from(i: InvoiceInfo) -> String {
        i.0
    }
}

trait ClassifyName {
    fn classify_name(&self) -> &'static str;
}

impl ClassifyName for serde_json::Error {
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "unreadable",
            serde_json::error::Category::Syntax => "a syntax error",
            serde_json::error::Category::Data => "unexpected data",
            serde_json::error::Category::Eof => "it ends early",
        }
    }
}

/// What a charge tells Oen about its payer. Empty when the link carried nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<Email>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<PayerName>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invoice_info: Option<InvoiceInfo>,
}

impl Payer {
    pub fn is_empty(&self) -> bool {
        self.email.is_none() && self.name.is_none() && self.invoice_info.is_none()
    }

    /// What a subscription keeps when the customer binds again with a link carrying `newer`:
    /// a new e-mail brings its own name (the old name belonged to the old address); without one
    /// the e-mail and name stay. A new `invoiceInfo` replaces the old; without one it stays.
    pub fn updated_by(&self, newer: &Payer) -> Payer {
        let (email, name) = match &newer.email {
            Some(_) => (newer.email.clone(), newer.name.clone()),
            None => (
                self.email.clone(),
                newer.name.clone().or_else(|| self.name.clone()),
            ),
        };
        Payer {
            email,
            name,
            invoice_info: newer
                .invoice_info
                .clone()
                .or_else(|| self.invoice_info.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_checked_precisely_and_never_repeated_in_errors() {
        for good in [
            "a@shop.example",
            "a.b+tag@mail.shop.tw",
            "o'brien_1!#$%&*/=?^`{|}~-@x-y.com",
            "user@xn--fiqs8s.tw",
        ] {
            assert_eq!(Email::parse(good).unwrap().as_str(), good);
        }
        let cases = [
            ("", "it is empty"),
            ("plain.example.com", "it has no @"),
            ("a@b@shop.example", "it has more than one @"),
            (
                "@shop.example",
                "the part before @ must have 1 to 64 characters",
            ),
            ("a b@shop.example", "the part before @ has a character"),
            (".a@shop.example", "starts or ends with a dot"),
            ("a..b@shop.example", "two in a row"),
            ("a@localhost", "the domain after @ has no dot"),
            ("a@shop..example", "joined by single dots"),
            ("a@-shop.example", "inner hyphens"),
            ("a@shop_x.example", "letters, digits"),
            ("a@10.0.0.1", "ends in a number"),
            ("användare@shop.example", "non-ASCII"),
        ];
        for (bad, why) in cases {
            let err = Email::parse(bad).unwrap_err().to_string();
            assert!(err.contains(why), "{bad:?}: {err}");
            if !bad.is_empty() {
                assert!(!err.contains(bad), "the error repeats the address: {err}");
            }
        }
        let long = format!("{}@{}.tw", "a".repeat(64), "b".repeat(200));
        assert!(Email::parse(&long).unwrap_err().to_string().contains("254"));
        let long_local = format!("{}@shop.example", "a".repeat(65));
        assert!(Email::parse(&long_local).is_err());
    }

    #[test]
    fn names_and_invoice_info_are_bounded() {
        assert_eq!(PayerName::parse("  王小明 ").unwrap().as_str(), "王小明");
        assert!(PayerName::parse("  ").is_err());
        assert!(PayerName::parse("a\u{7}b").is_err());
        assert!(PayerName::parse(&"名".repeat(100)).is_ok());
        assert!(PayerName::parse(&"名".repeat(101)).is_err());

        let info =
            InvoiceInfo::parse(r#"{ "carrierType": "3J0002", "carrierId": "/ABC+123" }"#).unwrap();
        assert_eq!(
            info.to_json(),
            serde_json::json!({"carrierType": "3J0002", "carrierId": "/ABC+123"})
        );
        for (bad, why) in [
            ("not json", "is not JSON"),
            ("[1,2]", "must be a JSON object"),
            ("\"x\"", "must be a JSON object"),
        ] {
            let err = InvoiceInfo::parse(bad).unwrap_err().to_string();
            assert!(err.contains(why), "{bad}: {err}");
        }
        let big = format!(r#"{{"x":"{}"}}"#, "a".repeat(520));
        assert!(InvoiceInfo::parse(&big)
            .unwrap_err()
            .to_string()
            .contains("512 bytes"));
    }

    #[test]
    fn debug_shows_no_personal_data() {
        let payer = Payer {
            email: Some(Email::parse("secret.person@shop.example").unwrap()),
            name: Some(PayerName::parse("Secret Person").unwrap()),
            invoice_info: Some(InvoiceInfo::parse(r#"{"taxId":"12345678"}"#).unwrap()),
        };
        let shown = format!("{payer:?}");
        for private in ["secret.person", "Secret Person", "12345678"] {
            assert!(!shown.contains(private), "{shown}");
        }
    }

    #[test]
    fn a_new_links_email_wins_and_what_it_leaves_out_is_kept() {
        let email = |e: &str| Some(Email::parse(e).unwrap());
        let name = |n: &str| Some(PayerName::parse(n).unwrap());
        let info = |i: &str| Some(InvoiceInfo::parse(i).unwrap());
        let old = Payer {
            email: email("old@shop.example"),
            name: name("Old"),
            invoice_info: info(r#"{"carrier":"old"}"#),
        };
        let new_address = Payer {
            email: email("new@shop.example"),
            ..Payer::default()
        };
        assert_eq!(
            old.updated_by(&new_address),
            Payer {
                email: email("new@shop.example"),
                name: None,
                invoice_info: info(r#"{"carrier":"old"}"#),
            }
        );
        let new_invoice = Payer {
            invoice_info: info(r#"{"carrier":"new"}"#),
            ..Payer::default()
        };
        assert_eq!(
            old.updated_by(&new_invoice),
            Payer {
                invoice_info: info(r#"{"carrier":"new"}"#),
                ..old.clone()
            }
        );
        assert_eq!(old.updated_by(&Payer::default()), old);
    }
}
