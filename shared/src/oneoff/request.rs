//! `POST /v1/charges`' body, parsed into values that can only be valid, and its canonical hash:
//! what "the same parameters" means for an idempotency key.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::OneOffError;
use crate::domain::{Amount, CustomerId, ProductDetail};

/// The most product lines one charge carries.
pub const MAX_LINES: usize = 20;

/// A one-off charge as the merchant asks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OneOffRequest {
    pub customer: CustomerId,
    pub amount: Amount,
    pub description: String,
    pub reference: Option<String>,
    /// Σ quantity × unit price equals `amount` (Oen refuses anything else with `V0001`).
    pub product_details: Vec<ProductDetail>,
}

/// The body as sent. Unknown fields are refused: on a money call a misspelt field must not be
/// ignored silently.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Body {
    customer: CustomerId,
    amount: Amount,
    description: String,
    #[serde(default)]
    reference: Option<String>,
    #[serde(default)]
    product_details: Option<Vec<ProductDetail>>,
}

/// What the hash covers, in a fixed order; `v` versions the canonical form.
#[derive(Serialize)]
struct Canonical<'a> {
    v: u8,
    customer: &'a str,
    amount: u32,
    description: &'a str,
    reference: Option<&'a str>,
    lines: Vec<(&'a str, &'a str, u32, &'a str, u32)>,
}

impl OneOffRequest {
    /// Parses and checks the JSON body.
    pub fn from_json(body: &[u8]) -> Result<Self, OneOffError> {
        let body: Body = serde_json::from_slice(body)
            .map_err(|e| OneOffError::InvalidRequest(format!("body: {e}")))?;
        Self::new(
            body.customer,
            body.amount,
            body.description,
            body.reference,
            body.product_details,
        )
    }

    /// Checks the parts of a request. Without product lines, one line of the whole amount
    /// described by `description` is charged.
    pub fn new(
        customer: CustomerId,
        amount: Amount,
        description: String,
        reference: Option<String>,
        product_details: Option<Vec<ProductDetail>>,
    ) -> Result<Self, OneOffError> {
        text("description", &description, 200)?;
        if let Some(r) = &reference {
            text("reference", r, 128)?;
        }
        let product_details = match product_details {
            None => vec![ProductDetail {
                production_code: "ONEOFF".into(),
                description: description.clone(),
                quantity: 1,
                unit: "item".into(),
                unit_price: amount.ntd(),
            }],
            Some(lines) => lines,
        };
        check_lines(&product_details, amount)?;
        Ok(Self {
            customer,
            amount,
            description,
            reference,
            product_details,
        })
    }

    /// Lowercase hex SHA-256 of the parameters in a canonical form: the same request however
    /// its JSON is spelt (key order, whitespace, an omitted default line written out), and a
    /// different hash when any value differs.
    pub fn canonical_hash(&self) -> String {
        let canonical = Canonical {
            v: 1,
            customer: self.customer.as_str(),
            amount: self.amount.ntd(),
            description: &self.description,
            reference: self.reference.as_deref(),
            lines: self
                .product_details
                .iter()
                .map(|d| {
                    (
                        d.production_code.as_str(),
                        d.description.as_str(),
                        d.quantity,
                        d.unit.as_str(),
                        d.unit_price,
                    )
                })
                .collect(),
        };
        // Plain strings and integers always serialise.
        let bytes = serde_json::to_vec(&canonical).unwrap_or_default();
        hex::encode(Sha256::digest(bytes))
    }
}

/// 1 to `max` characters, no control characters.
fn text(what: &str, value: &str, max: usize) -> Result<(), OneOffError> {
    let n = value.chars().count();
    if value.trim().is_empty() || n > max {
        return Err(OneOffError::InvalidRequest(format!(
            "{what} must be 1 to {max} characters"
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(OneOffError::InvalidRequest(format!(
            "{what} must not contain control characters"
        )));
    }
    Ok(())
}

fn check_lines(lines: &[ProductDetail], amount: Amount) -> Result<(), OneOffError> {
    if lines.is_empty() || lines.len() > MAX_LINES {
        return Err(OneOffError::InvalidRequest(format!(
            "productDetails must have 1 to {MAX_LINES} lines"
        )));
    }
    let mut total: u64 = 0;
    for (i, line) in lines.iter().enumerate() {
        text("productDetails[].productionCode", &line.production_code, 50)?;
        text("productDetails[].description", &line.description, 200)?;
        text("productDetails[].unit", &line.unit, 20)?;
        if line.quantity == 0 {
            return Err(OneOffError::InvalidRequest(format!(
                "productDetails[{i}].quantity must be at least 1"
            )));
        }
        total += u64::from(line.quantity) * u64::from(line.unit_price);
    }
    if total != u64::from(amount.ntd()) {
        return Err(OneOffError::InvalidRequest(format!(
            "productDetails add up to NT${total}, not the amount {amount}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<OneOffRequest, OneOffError> {
        OneOffRequest::from_json(json.as_bytes())
    }

    #[test]
    fn the_hash_ignores_spelling_and_sees_every_value() {
        let a =
            parse(r#"{"customer":"c1","amount":150,"description":"Late fee","reference":"r1"}"#)
                .unwrap();
        let b = parse(
            r#" { "reference" : "r1", "description":"Late fee",
                  "amount":150, "customer":"c1",
                  "productDetails":[{"productionCode":"ONEOFF","description":"Late fee",
                                     "quantity":1,"unit":"item","unitPrice":150}] } "#,
        )
        .unwrap();
        assert_eq!(a.canonical_hash(), b.canonical_hash());
        assert_eq!(a.canonical_hash().len(), 64);
        for other in [
            r#"{"customer":"c2","amount":150,"description":"Late fee","reference":"r1"}"#,
            r#"{"customer":"c1","amount":151,"description":"Late fee","reference":"r1"}"#,
            r#"{"customer":"c1","amount":150,"description":"Late fee!","reference":"r1"}"#,
            r#"{"customer":"c1","amount":150,"description":"Late fee","reference":"r2"}"#,
            r#"{"customer":"c1","amount":150,"description":"Late fee"}"#,
        ] {
            assert_ne!(
                parse(other).unwrap().canonical_hash(),
                a.canonical_hash(),
                "{other}"
            );
        }
    }

    #[test]
    fn bad_bodies_are_refused_with_a_reason() {
        for (body, says) in [
            (
                r#"{"customer":"c1","amount":0,"description":"x"}"#,
                "amount",
            ),
            (
                r#"{"customer":"c 1","amount":5,"description":"x"}"#,
                "customer",
            ),
            (
                r#"{"customer":"c1","amount":5,"description":" "}"#,
                "description",
            ),
            (
                r#"{"customer":"c1","amount":5,"description":"x","ammount":5}"#,
                "ammount",
            ),
            (r#"{"customer":"c1","amount":5}"#, "description"),
            (
                r#"{"customer":"c1","amount":5,"description":"x","productDetails":[
                   {"productionCode":"A","description":"a","quantity":2,"unit":"u","unitPrice":2}]}"#,
                "add up to NT$4",
            ),
            (
                r#"{"customer":"c1","amount":5,"description":"x","productDetails":[]}"#,
                "1 to 20 lines",
            ),
            ("not json", "body"),
        ] {
            let err = parse(body).unwrap_err();
            assert_eq!(err.status(), 400, "{body}");
            assert!(err.to_string().contains(says), "{body}: {err}");
        }
    }
}
