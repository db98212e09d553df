//! Endpoint strings: what users may write ("127.0.0.1:7000", "host",
//! "http://host:7000/", "[::1]:7001") and the one canonical form the client
//! dials ("http://host:port").

use crate::error::{Error, Result};

/// The client port a Synod node listens on when none is given.
pub const DEFAULT_PORT: u16 = 7000;

/// Turns one user-written endpoint into `http://host:port`.
pub fn normalize_endpoint(raw: &str) -> Result<String> {
    let invalid = |reason: &str| Error::InvalidEndpoint {
        endpoint: raw.to_owned(),
        reason: reason.to_owned(),
    };
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(invalid("empty"));
    }
    let authority = match trimmed.split_once("://") {
        Some((scheme, rest)) => {
            if scheme.eq_ignore_ascii_case("http") {
                rest
            } else if scheme.eq_ignore_ascii_case("https") {
                return Err(invalid(
                    "write host:port: TLS is turned on by a CA bundle (ClientConfig::tls, --tls-ca), not by the scheme",
                ));
            } else {
                return Err(invalid("scheme must be http"));
            }
        }
        None => trimmed,
    };
    // A trailing slash is what people paste from browsers; any other path
    // would be silently ignored by gRPC, so it is refused.
    let authority = authority.strip_suffix('/').unwrap_or(authority);
    if authority.is_empty() {
        return Err(invalid("no host"));
    }
    if authority.contains('/') {
        return Err(invalid("endpoints have no path"));
    }
    if authority.contains('@') {
        return Err(invalid("endpoints have no user info"));
    }
    let (host, port) = split_host_port(authority).map_err(&invalid)?;
    let port = match port {
        None => DEFAULT_PORT,
        Some(text) => match text.parse::<u16>() {
            Ok(0) | Err(_) => return Err(invalid("port must be a number from 1 to 65535")),
            Ok(port) => port,
        },
    };
    let normalized = format!("http://{host}:{port}");
    // Let the HTTP stack have the last word on what is a valid authority.
    normalized
        .parse::<tonic::codegen::http::Uri>()
        .map_err(|err| invalid(&err.to_string()))?;
    Ok(normalized)
}

/// Parses a comma-separated list ("a:7001, b:7002"), skipping empty items,
/// and normalizes each endpoint.
pub fn parse_endpoints(list: &str) -> Result<Vec<String>> {
    list.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(normalize_endpoint)
        .collect()
}

fn split_host_port(authority: &str) -> Result<(&str, Option<&str>), &'static str> {
    if let Some(rest) = authority.strip_prefix('[') {
        let Some((inside, after)) = rest.split_once(']') else {
            return Err("unclosed [ in IPv6 address");
        };
        if inside.is_empty() {
            return Err("no host");
        }
        let host = &authority[..inside.len() + 2];
        return match after {
            "" => Ok((host, None)),
            _ => match after.strip_prefix(':') {
                Some(port) => Ok((host, Some(port))),
                None => Err("unexpected text after ]"),
            },
        };
    }
    match authority.split_once(':') {
        None => Ok((authority, None)),
        Some((host, port)) => {
            if port.contains(':') {
                return Err("write IPv6 addresses in brackets, like [::1]:7000");
            }
            if host.is_empty() {
                return Err("no host");
            }
            Ok((host, Some(port)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_scheme_and_default_port() {
        assert_eq!(
            normalize_endpoint("127.0.0.1:7001").ok(),
            Some("http://127.0.0.1:7001".to_owned())
        );
        assert_eq!(
            normalize_endpoint("localhost").ok(),
            Some("http://localhost:7000".to_owned())
        );
        assert_eq!(
            normalize_endpoint("  node-1.synod:7002 ").ok(),
            Some("http://node-1.synod:7002".to_owned())
        );
    }

    #[test]
    fn accepts_http_urls() {
        assert_eq!(
            normalize_endpoint("http://10.0.0.1:7000/").ok(),
            Some("http://10.0.0.1:7000".to_owned())
        );
        assert_eq!(
            normalize_endpoint("HTTP://host").ok(),
            Some("http://host:7000".to_owned())
        );
    }

    #[test]
    fn ipv6() {
        assert_eq!(
            normalize_endpoint("[::1]:7001").ok(),
            Some("http://[::1]:7001".to_owned())
        );
        assert_eq!(
            normalize_endpoint("http://[::1]").ok(),
            Some("http://[::1]:7000".to_owned())
        );
        assert!(normalize_endpoint("::1").is_err());
        assert!(normalize_endpoint("[::1").is_err());
        assert!(normalize_endpoint("[::1]x").is_err());
    }

    #[test]
    fn rejects_nonsense() {
        for bad in [
            "",
            "  ",
            "https://host:7000",
            "grpc://host",
            "host:port",
            "host:0",
            "host:70000",
            "http://",
            ":7000",
            "host:7000/path",
            "user@host:7000",
            "bad host:7000",
        ] {
            assert!(normalize_endpoint(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn error_names_the_endpoint() {
        let err = normalize_endpoint("host:x").err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("invalid endpoint \"host:x\": port must be a number from 1 to 65535")
        );
    }

    #[test]
    fn parses_lists() {
        assert_eq!(
            parse_endpoints("127.0.0.1:7001, 127.0.0.1:7002,,http://h:1").ok(),
            Some(vec![
                "http://127.0.0.1:7001".to_owned(),
                "http://127.0.0.1:7002".to_owned(),
                "http://h:1".to_owned(),
            ])
        );
        assert_eq!(parse_endpoints("").ok(), Some(vec![]));
        assert!(parse_endpoints("a:1,b:x").is_err());
    }
}
