//! HTTP helpers shared by the HTTP functions: request ids, source addresses, error pages.
//! The same axum routers run under `lambda_http` on Lambda and under `axum::serve` locally, so
//! each helper looks for the Lambda request context first and falls back to the socket.

use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;
use axum::http::{header, request::Parts, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use ipnet::IpNet;
use lambda_http::request::RequestContext;

/// The id that ties a log line to a request: API Gateway's request id on Lambda, else an
/// `x-request-id` header, else a fresh one.
pub fn request_id(parts: &Parts) -> String {
    if let Some(RequestContext::ApiGatewayV2(ctx)) = parts.extensions.get::<RequestContext>() {
        if let Some(id) = &ctx.request_id {
            return id.clone();
        }
    }
    parts
        .headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= 64 && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        .map(str::to_owned)
        .unwrap_or_else(|| crate::domain::random_alphanumeric(16))
}

/// The client's address as API Gateway saw it, or the socket peer locally.
pub fn source_ip(parts: &Parts) -> Option<IpAddr> {
    if let Some(RequestContext::ApiGatewayV2(ctx)) = parts.extensions.get::<RequestContext>() {
        return ctx.http.source_ip.as_deref().and_then(|ip| ip.parse().ok());
    }
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}

/// An IPv4 or IPv6 network in CIDR notation (a bare address is a /32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr(IpNet);

impl Cidr {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        // The address goes through std's parser, which is stricter than ipnet's (no leading
        // zeros in IPv4 octets); ipnet checks the prefix length against the address family.
        let (addr, prefix) = match raw.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (raw, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{raw:?} is not an IP address or CIDR"))?;
        let network = match prefix {
            None => IpNet::from(addr),
            Some(p) => p
                .parse::<u8>()
                .ok()
                .and_then(|p| IpNet::new(addr, p).ok())
                .ok_or_else(|| format!("{raw:?} has an invalid prefix length"))?,
        };
        Ok(Self(network))
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        // A dual-stack listener sees an IPv4 client as an IPv4-mapped IPv6 address.
        let ip = match (self.0, ip) {
            (IpNet::V4(_), IpAddr::V6(a)) => a.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            _ => ip,
        };
        self.0.contains(&ip)
    }

    /// A comma-separated list, as in `WEBHOOK_ALLOWED_IPS`.
    pub fn parse_list(raw: &str) -> Result<Vec<Self>, String> {
        raw.split(',')
            .filter(|s| !s.trim().is_empty())
            .map(Self::parse)
            .collect()
    }
}

/// A small JSON error: `{"error": "...", "requestId": "..."}`, never cached.
pub fn json_error(status: StatusCode, message: &str, request_id: Option<&str>) -> Response {
    let body = serde_json::json!({"error": message, "requestId": request_id});
    let mut r = (status, axum::Json(body)).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// A small HTML error page for a browser.
pub fn html_error(
    status: StatusCode,
    title: &str,
    message: &str,
    request_id: Option<&str>,
) -> Response {
    let reference = request_id
        .map(|id| format!("<p><small>Reference: {}</small></p>", escape(id)))
        .unwrap_or_default();
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title></head>\
         <body><h1>{t}</h1><p>{m}</p>{reference}</body></html>",
        t = escape(title),
        m = escape(message)
    );
    let mut r = (status, axum::response::Html(body)).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// HTML-escapes text.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_match_their_networks() {
        let c = Cidr::parse("203.0.113.0/24").unwrap();
        assert!(c.contains("203.0.113.77".parse().unwrap()));
        assert!(!c.contains("203.0.114.1".parse().unwrap()));
        assert!(c.contains("::ffff:203.0.113.5".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.1")
            .unwrap()
            .contains("10.0.0.1".parse().unwrap()));
        assert!(!Cidr::parse("10.0.0.1")
            .unwrap()
            .contains("10.0.0.2".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains("1.2.3.4".parse().unwrap()));
        assert!(Cidr::parse("2001:db8::/32")
            .unwrap()
            .contains("2001:db8:1::1".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("example.com").is_err());
        assert_eq!(Cidr::parse_list("1.2.3.4, 5.6.7.0/24,").unwrap().len(), 2);
    }

    #[test]
    fn cidrs_ignore_host_bits_and_never_match_across_families() {
        let c = Cidr::parse("10.0.0.1/24").unwrap();
        assert!(c.contains("10.0.0.200".parse().unwrap()));
        assert!(!c.contains("10.0.1.1".parse().unwrap()));
        assert!(!Cidr::parse("::/0")
            .unwrap()
            .contains("1.2.3.4".parse().unwrap()));
        assert!(!Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains("2001:db8::1".parse().unwrap()));
        assert!(Cidr::parse("::1/129").is_err());
    }

    #[test]
    fn error_pages_escape_their_text() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
