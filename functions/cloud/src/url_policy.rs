//! Which URLs the importer may fetch, and which addresses it may connect to: pure checks, no I/O.
//!
//! A URL passes when its scheme is `https` (or `http` where allowed), it carries no credentials,
//! and its host (and port) is on the allow-list. An address passes when it is globally routable:
//! loopback, private (RFC 1918), link-local, unique-local, CGNAT, cloud metadata
//! (169.254.169.254, fd00:ec2::254), multicast, documentation, benchmarking and reserved ranges
//! are refused, and so is every IPv6 form that carries an IPv4 address (IPv4-mapped,
//! IPv4-compatible, NAT64, 6to4) whose IPv4 address is refused. Teredo is refused outright: its
//! far end cannot be known.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why a URL or an address is refused: a stable class and a sentence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{class}: {reason}")]
pub struct Refusal {
    /// `scheme`, `credentials`, `bad_url`, `host_not_allowed`, `private_address`,
    /// `too_many_redirects`, `oversize`, `not_an_image`, `http_status` (4xx); transient:
    /// `timeout`, `network`, `server_error` (5xx, 429).
    pub class: &'static str,
    /// What was refused and why.
    pub reason: String,
}

impl Refusal {
    /// True when a later attempt may succeed (the host was slow, unreachable or overloaded).
    pub fn is_transient(&self) -> bool {
        matches!(self.class, "timeout" | "network" | "server_error")
    }

    /// A refusal of `class`.
    pub fn new(class: &'static str, reason: impl Into<String>) -> Self {
        Self {
            class,
            reason: reason.into(),
        }
    }
}

/// `url` as imgpipe stores and logs it: `scheme://host[:port]/path`, without userinfo, query or
/// fragment (signed URLs carry their tokens there); `?...` marks a dropped query. Text that does not
/// parse as a URL is cut at its first `?` or `#` and loses anything up to an `@` after the scheme.
pub fn redact(url: &str) -> String {
    if let Ok(parsed) = url::Url::parse(url)
        && parsed.has_host()
    {
        let mut shown = format!("{}://{}", parsed.scheme(), parsed.host_str().unwrap_or(""));
        if let Some(port) = parsed.port() {
            shown.push_str(&format!(":{port}"));
        }
        shown.push_str(parsed.path());
        if parsed.query().is_some() || parsed.fragment().is_some() {
            shown.push_str("?...");
        }
        return shown;
    }
    let cut = url.find(['?', '#']);
    let mut shown = url[..cut.unwrap_or(url.len())].to_string();
    if let Some((scheme, rest)) = shown.split_once("://")
        && let Some((_, host)) = rest.split_once('@')
    {
        shown = format!("{scheme}://{host}");
    }
    if cut.is_some() {
        shown.push_str("?...");
    }
    shown
}

/// `text` with every URL in it (`scheme://` up to whitespace, a quote or a closing bracket)
/// [`redact`]ed: for refusal reasons and HTTP client errors, which quote the URL they are about.
pub fn redact_in(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let start = rest[..at]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
            .map_or(0, |i| i + 1);
        let end = rest[at..]
            .find(|c: char| c.is_whitespace() || matches!(c, '\'' | '"' | ')' | ']' | '>' | ','))
            .map_or(rest.len(), |i| at + i);
        out.push_str(&rest[..start]);
        out.push_str(&redact(&rest[start..end]));
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// The first 16 hex digits of the SHA-256 of the whole `url`: lets an app match a stored entry with
/// the URL it listed, without the stored copy carrying the URL's tokens.
pub fn url_id(url: &str) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(url.as_bytes())[..8])
}

/// Hosts the importer may fetch from: `host`, `host:port`, `*.domain` or `*.domain:port`
/// (subdomains only). Without a port, only the scheme's default port is allowed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    entries: Vec<(String, Option<u16>)>,
}

impl AllowList {
    /// Parses a comma-separated list; an entry that is not a host name fails with a sentence.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut entries = Vec::new();
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (host, port) = match entry.rsplit_once(':') {
                Some((host, port)) if !host.contains(':') => (
                    host,
                    Some(
                        port.parse::<u16>()
                            .map_err(|_| format!("'{entry}': '{port}' is not a port"))?,
                    ),
                ),
                _ => (entry, None),
            };
            let name = host.strip_prefix("*.").unwrap_or(host);
            let valid = !name.is_empty()
                && name.split('.').all(|label| {
                    !label.is_empty()
                        && label
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                });
            if !valid {
                return Err(format!("'{entry}' is not a host name or *.domain"));
            }
            entries.push((host.to_ascii_lowercase(), port));
        }
        Ok(Self { entries })
    }

    /// True when nothing is allowed (imports are off).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// True when `host` (lower case, no trailing dot) on `port` is allowed; `default_port` is the
    /// scheme's.
    pub fn allows(&self, host: &str, port: u16, default_port: u16) -> bool {
        self.entries.iter().any(|(pattern, allowed_port)| {
            let port_ok = allowed_port.map_or(port == default_port, |p| p == port);
            let host_ok = match pattern.strip_prefix("*.") {
                Some(domain) => host
                    .strip_suffix(domain)
                    .is_some_and(|rest| rest.len() > 1 && rest.ends_with('.')),
                None => pattern == host,
            };
            port_ok && host_ok
        })
    }
}

/// Checks `url` against the scheme rule and the allow-list; returns `(host, port)` to resolve.
pub fn check_url(
    url: &reqwest::Url,
    allow: &AllowList,
    allow_http: bool,
) -> Result<(String, u16), Refusal> {
    let default_port = match url.scheme() {
        "https" => 443,
        "http" if allow_http => 80,
        "http" => {
            return Err(Refusal::new(
                "scheme",
                format!(
                    "{url}: plain http is not allowed (IMGPIPE_IMPORT_ALLOW_HTTP=false); use https"
                ),
            ));
        }
        other => {
            return Err(Refusal::new(
                "scheme",
                format!("{url}: scheme '{other}' is not fetched; only https"),
            ));
        }
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Refusal::new(
            "credentials",
            "URLs with user:password@ are refused; credentials do not belong in a manifest",
        ));
    }
    let host = match url.host() {
        Some(url::Host::Domain(d)) => d.trim_end_matches('.').to_ascii_lowercase(),
        Some(url::Host::Ipv4(ip)) => ip.to_string(),
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        None => return Err(Refusal::new("bad_url", format!("{url} has no host"))),
    };
    let port = url.port().unwrap_or(default_port);
    if !allow.allows(&host, port, default_port) {
        return Err(Refusal::new(
            "host_not_allowed",
            format!(
                "{host}:{port} is not on the import allow-list (IMGPIPE_IMPORT_ALLOW_HOSTS{})",
                if allow.is_empty() {
                    " is empty: URL imports are off"
                } else {
                    ""
                }
            ),
        ));
    }
    Ok((host, port))
}

/// Why the importer must not connect to `ip`, or `None` when it is globally routable.
pub fn forbidden(ip: IpAddr) -> Option<String> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4).map(str::to_string),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        _ if ip == Ipv4Addr::new(169, 254, 169, 254) => "the cloud metadata service",
        (0, _, _) => "'this network' (0.0.0.0/8)",
        (10, _, _) => "private (10.0.0.0/8)",
        (172, 16..=31, _) => "private (172.16.0.0/12)",
        (192, 168, _) => "private (192.168.0.0/16)",
        (127, _, _) => "loopback (127.0.0.0/8)",
        (169, 254, _) => "link-local (169.254.0.0/16)",
        (100, 64..=127, _) => "carrier-grade NAT (100.64.0.0/10)",
        (192, 0, 0) => "IETF protocol assignments (192.0.0.0/24)",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "documentation (TEST-NET)",
        (198, 18..=19, _) => "benchmarking (198.18.0.0/15)",
        (224..=239, _, _) => "multicast (224.0.0.0/4)",
        (240..=255, _, _) => "reserved or broadcast (240.0.0.0/4)",
        _ => return None,
    })
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<String> {
    let s = ip.segments();
    let embedded = |v4: Ipv4Addr, form: &str| {
        forbidden_v4(v4).map(|why| format!("{form} of {v4}, which is {why}"))
    };
    if ip == Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254) {
        return Some("the cloud metadata service (fd00:ec2::254)".into());
    }
    if ip.is_unspecified() {
        return Some("unspecified (::)".into());
    }
    if ip.is_loopback() {
        return Some("loopback (::1)".into());
    }
    if let Some(v4) = ip.to_ipv4_mapped() {
        return embedded(v4, "IPv4-mapped form");
    }
    let low_v4 = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    if s[..6] == [0, 0, 0, 0, 0, 0] {
        return Some(
            embedded(low_v4, "IPv4-compatible form")
                .unwrap_or_else(|| "IPv4-compatible (deprecated, ::/96)".into()),
        );
    }
    if s[..6] == [0, 0, 0, 0, 0xffff, 0] {
        return Some(
            embedded(low_v4, "IPv4-translated form")
                .unwrap_or_else(|| "IPv4-translated (::ffff:0:0:0/96)".into()),
        );
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return embedded(low_v4, "NAT64 form");
    }
    if s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1 {
        return Some("local-use NAT64 (64:ff9b:1::/48)".into());
    }
    if s[0] == 0x2002 {
        let v4 = Ipv4Addr::new((s[1] >> 8) as u8, s[1] as u8, (s[2] >> 8) as u8, s[2] as u8);
        return embedded(v4, "6to4 form");
    }
    Some(
        match s[0] {
            0xfc00..=0xfdff => "unique-local (fc00::/7)",
            0xfe80..=0xfebf => "link-local (fe80::/10)",
            0xfec0..=0xfeff => "site-local (fec0::/10, deprecated)",
            0xff00..=0xffff => "multicast (ff00::/8)",
            0x2001 if s[1] == 0 => "Teredo (2001::/32): the far end cannot be checked",
            0x2001 if s[1] == 0xdb8 => "documentation (2001:db8::/32)",
            0x0100 if s[1..4] == [0, 0, 0] => "discard-only (100::/64)",
            _ => return None,
        }
        .into(),
    )
}

/// Refuses the whole name when any of its addresses is refused (a name that mixes public and
/// private addresses is a rebinding attempt or a mistake); else returns the first address.
pub fn pick_address(host: &str, addresses: &[IpAddr]) -> Result<IpAddr, Refusal> {
    for ip in addresses {
        if let Some(why) = forbidden(*ip) {
            return Err(Refusal::new(
                "private_address",
                format!("{host} resolves to {ip}: {why}"),
            ));
        }
    }
    addresses
        .first()
        .copied()
        .ok_or_else(|| Refusal::new("network", format!("{host} has no address")))
}

#[cfg(test)]
mod tests {

    #[test]
    fn stored_urls_keep_no_token_or_credentials() {
        assert_eq!(
            redact("https://u:p@h.example:8443/a/b.jpg?X-Amz-Signature=s3cr3t#frag"),
            "https://h.example:8443/a/b.jpg?..."
        );
        assert_eq!(redact("https://h.example/a.jpg"), "https://h.example/a.jpg");
        assert_eq!(redact("not a url?token=x"), "not a url?...");
        assert_eq!(redact("ftp://user@h/x?sig=1"), "ftp://h/x?...");
        let reason =
            "GET https://h.example/a.jpg?sig=SECRET answered 404; 'http://u:pw@x/y?t=SECRET2' too";
        let shown = redact_in(reason);
        assert!(
            !shown.contains("SECRET") && !shown.contains("pw"),
            "{shown}"
        );
        assert_eq!(
            shown,
            "GET https://h.example/a.jpg?... answered 404; 'http://x/y?...' too"
        );
        assert_eq!(redact_in("no url here"), "no url here");
        assert_eq!(url_id("https://h/a?x=1").len(), 16);
        assert_ne!(url_id("https://h/a?x=1"), url_id("https://h/a?x=2"));
    }

    use super::*;

    fn url(text: &str) -> reqwest::Url {
        text.parse().unwrap()
    }

    #[test]
    fn only_https_unless_http_is_allowed() {
        let allow = AllowList::parse("images.example.com").unwrap();
        assert!(check_url(&url("https://images.example.com/a.jpg"), &allow, false).is_ok());
        for refused in [
            "http://images.example.com/a.jpg",
            "ftp://images.example.com/a.jpg",
            "file:///etc/passwd",
        ] {
            assert_eq!(
                check_url(&url(refused), &allow, false).unwrap_err().class,
                "scheme",
                "{refused}"
            );
        }
        assert!(check_url(&url("http://images.example.com/a.jpg"), &allow, true).is_ok());
    }

    #[test]
    fn hosts_and_ports_come_from_the_allow_list() {
        let allow =
            AllowList::parse("images.example.com, *.cdn.example.org, local.test:8080").unwrap();
        let class = |u: &str| check_url(&url(u), &allow, true).err().map(|r| r.class);
        assert_eq!(class("https://images.example.com/a"), None);
        assert_eq!(class("https://IMAGES.example.com./a"), None);
        assert_eq!(class("https://a.b.cdn.example.org/a"), None);
        assert_eq!(class("https://cdn.example.org/a"), Some("host_not_allowed"),);
        assert_eq!(
            class("https://evilcdn.example.org/a"),
            Some("host_not_allowed")
        );
        assert_eq!(
            class("https://images.example.com.evil.net/a"),
            Some("host_not_allowed")
        );
        assert_eq!(
            class("https://images.example.com:8443/a"),
            Some("host_not_allowed")
        );
        assert_eq!(class("http://local.test:8080/a"), None);
        assert_eq!(
            class("https://169.254.169.254/latest/meta-data"),
            Some("host_not_allowed")
        );
        assert_eq!(
            class("https://user:pw@images.example.com/a"),
            Some("credentials")
        );
        let none = AllowList::default();
        let refusal = check_url(&url("https://images.example.com/a"), &none, false).unwrap_err();
        assert!(refusal.reason.contains("URL imports are off"), "{refusal}");
        assert!(AllowList::parse("bad host").is_err());
        assert!(AllowList::parse("a.com:99999").is_err());
    }

    #[test]
    fn every_non_global_range_is_refused() {
        for ip in [
            "0.0.0.0",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "127.0.0.1",
            "127.8.8.8",
            "169.254.169.254",
            "169.254.1.1",
            "100.64.0.1",
            "100.127.255.255",
            "192.0.0.192",
            "192.0.2.1",
            "198.51.100.1",
            "203.0.113.9",
            "198.18.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "fd00:ec2::254",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:100.64.0.1",
            "::10.0.0.1",
            "::ffff:0:a00:1",
            "::ffff:0:808:808",
            "64:ff9b::7f00:1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::1",
            "2002:a00:1::1",
            "2002:7f00:1::",
            "2001:0:4136:e378::1",
            "2001:db8::1",
            "100::1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(forbidden(ip).is_some(), "{ip} must be refused");
        }
        assert!(
            forbidden("169.254.169.254".parse().unwrap())
                .unwrap()
                .contains("metadata")
        );
        assert!(
            forbidden("fd00:ec2::254".parse().unwrap())
                .unwrap()
                .contains("metadata")
        );
        assert!(
            forbidden("::ffff:10.0.0.1".parse().unwrap())
                .unwrap()
                .contains("IPv4-mapped")
        );
    }

    #[test]
    fn global_addresses_pass() {
        for ip in [
            "93.184.215.14",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(forbidden(ip), None, "{ip} is global");
        }
    }

    #[test]
    fn one_private_address_refuses_the_name() {
        let public: IpAddr = "93.184.215.14".parse().unwrap();
        let private: IpAddr = "10.0.0.7".parse().unwrap();
        assert_eq!(pick_address("a.test", &[public]), Ok(public));
        let refusal = pick_address("a.test", &[public, private]).unwrap_err();
        assert_eq!(refusal.class, "private_address");
        assert!(refusal.reason.contains("10.0.0.7"));
        assert_eq!(pick_address("a.test", &[]).unwrap_err().class, "network");
    }
}
