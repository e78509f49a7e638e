//! The pages the web server serves: which request gets which response.
//!
//! The walkthrough's last claim (17) is that a web server on the raw socket parses the
//! request, then sends back "static or dynamically generated HTML". Both are here:
//!
//! | request | response |
//! |---|---|
//! | `GET /` | a page made for this request: its method, target, version, every header field with what it is for, the client's address, and the raw bytes as received |
//! | `GET /about` | a static page, `pages/about.html`, built into the binary with `include_str!` |
//! | `GET /favicon.ico` | `204 No Content`: browsers ask for an icon on their own; there is none |
//! | `POST /form` | the form on `/`, its body decoded from `application/x-www-form-urlencoded` |
//! | `OPTIONS` on one of these paths | `200` with `Allow`: the methods that path takes |
//! | `OPTIONS *` | `200` with `Allow`: every method the server supports (RFC 9112 section 3.2.4) |
//! | any other path | `404` with an HTML page |
//! | a method this server knows but the path does not take | `405` with `Allow` |
//! | a method nobody registered | `501` |
//! | `*` with a method other than `OPTIONS`, or a target of no form | `400` |
//!
//! A target in absolute-form (`GET http://host/about`, RFC 9112 section 3.2.2) is routed by
//! its path, as a server MUST accept it, and its authority is the host the request is for
//! (shown on `/`), whatever the Host field says.
//!
//! `HEAD` is `GET` without the body; the server drops the body when it encodes the response.
//! Everything a peer sent is shown through [`html_escape`], so a header value like
//! `<script>` is text on the page, never markup.

use std::borrow::Cow;

use crate::endpoint::Address;
use crate::escape::escape;

use super::request::{Request, Target};
use super::response::Response;

/// The static page, compiled into the binary: no file to find at run time.
pub const ABOUT_PAGE: &str = include_str!("pages/about.html");

/// Methods defined by RFC 9110 (and PATCH): known, so a wrong one for a path is 405, while
/// anything else is 501 Not Implemented.
const KNOWN_METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

/// Every method some path of this site takes: what `OPTIONS *` answers.
pub const SERVER_METHODS: &str = "GET, HEAD, POST, OPTIONS";

/// The response to a request that parsed. `raw` is the bytes it arrived as.
pub fn respond(request: &Request, raw: &[u8], peer: &Address) -> Response {
    let method = request.head.method.as_str();
    if !KNOWN_METHODS.contains(&method) {
        return error_page(501, &format!("this server does not implement {method}"));
    }
    let target: Cow<'_, str> = match request.head.target_form() {
        Target::Asterisk if method == "OPTIONS" => {
            return Response::empty(200).with_header("Allow", SERVER_METHODS);
        }
        Target::Asterisk => {
            return error_page(
                400,
                &format!("the target * is only for OPTIONS, not {method} (RFC 9112 section 3.2.4)"),
            );
        }
        Target::Invalid(target) => {
            return error_page(
                400,
                &format!(
                    "{target} is not a request target: expected /path, http://host/path, host:port or *"
                ),
            );
        }
        Target::Absolute { path, .. } => Cow::Owned(path),
        Target::Origin(target) | Target::Authority(target) => Cow::Borrowed(target),
    };
    let path = target
        .split_once('?')
        .map_or(&*target, |(path, _query)| path);
    let reading = method == "GET" || method == "HEAD";
    let allow = match path {
        "/" | "/about" | "/favicon.ico" => "GET, HEAD, OPTIONS",
        "/form" => "POST, OPTIONS",
        _ => return error_page(404, &format!("nothing here at {}", request.head.target)),
    };
    match path {
        _ if method == "OPTIONS" => Response::empty(200).with_header("Allow", allow),
        "/" if reading => Response::html(200, request_page(request, raw, peer)),
        "/about" if reading => Response::html(200, ABOUT_PAGE.to_string()),
        "/favicon.ico" if reading => Response::empty(204),
        "/form" if method == "POST" => Response::html(200, form_page(request)),
        _ => method_not_allowed(method, allow),
    }
}

fn method_not_allowed(method: &str, allow: &str) -> Response {
    error_page(405, &format!("{method} is not allowed here; try {allow}"))
        .with_header("Allow", allow)
}

/// A small HTML page for an error status; `detail` is escaped.
pub fn error_page(status: u16, detail: &str) -> Response {
    let reason = super::response::reason_phrase(status);
    Response::html(
        status,
        page(
            &format!("{status} {reason}"),
            &format!(
                "<p>{}</p>\n<p><a href=\"/\">see your own request</a></p>\n",
                html_escape(detail)
            ),
        ),
    )
}

/// The walkthrough's "analyse the request message", done live for whoever asks.
fn request_page(request: &Request, raw: &[u8], peer: &Address) -> String {
    let head = &request.head;
    let mut body = String::new();
    body.push_str(&format!(
        "<p>The server received this request from <code>{}</code> and parsed it.</p>\n",
        html_escape(&peer.to_string())
    ));

    body.push_str("<h2>Request line</h2>\n");
    body.push_str(&format!(
        "<p id=\"request-line\"><code>{}</code></p>\n<table>\n",
        html_escape(&head.request_line())
    ));
    for (part, value, meaning) in [
        (
            "method",
            head.method.clone(),
            "what the client asks the server to do",
        ),
        (
            "target",
            head.target.clone(),
            "which resource: usually the path and query of the URL",
        ),
        (
            "version",
            head.version.to_string(),
            "the protocol version; it sets whether the connection stays open by default",
        ),
        (
            "host",
            head.host().map_or("(none)".into(), |host| {
                String::from_utf8_lossy(host).into_owned()
            }),
            "the site asked for: the target's authority when the target is a whole URL (absolute-form, RFC 9112 section 3.2.2), else the Host field",
        ),
    ] {
        body.push_str(&format!(
            "<tr><th>{part}</th><td><code>{}</code></td><td>{meaning}</td></tr>\n",
            html_escape(&value)
        ));
    }
    body.push_str("</table>\n");

    body.push_str("<h2>Header fields</h2>\n<table>\n");
    for header in &head.headers {
        body.push_str(&format!(
            "<tr><th>{}</th><td><code>{}</code></td><td>{}</td></tr>\n",
            html_escape(&header.name),
            html_escape(&String::from_utf8_lossy(&header.value)),
            explain_header(&header.name)
        ));
    }
    body.push_str("</table>\n");

    body.push_str(
        "<h2>Raw bytes</h2>\n<p>Exactly the bytes the server received for this request, with \
         <code>\\r\\n</code> shown. The empty line at the end of the head is how the server knows \
         the head is over.</p>\n<pre>",
    );
    let (shown, hidden) = capped(raw);
    for line in shown.split_inclusive(|&byte| byte == b'\n') {
        body.push_str(&html_escape(&escape(line)));
        body.push('\n');
    }
    body.push_str("</pre>\n");
    body.push_str(&more_bytes(hidden));

    body.push_str(
        "<h2>Send a POST</h2>\n\
         <form method=\"post\" action=\"/form\">\n\
         <input name=\"message\" value=\"hello, server\"> <button>send</button>\n\
         </form>\n\
         <p><a href=\"/about\">How this server works</a> (a static page)</p>\n",
    );
    page("Your request, as the server sees it", &body)
}

/// One line on what each common header field is for.
fn explain_header(name: &str) -> &'static str {
    match name.to_ascii_lowercase().as_str() {
        "host" => "which site the client wants: one address can serve many names",
        "connection" => {
            "close asks to end the connection after this response; keep-alive asks to keep it open, as HTTP/1.1 does by default"
        }
        "user-agent" => "which program sent the request",
        "accept" => {
            "the media types the client can take; q-values, not the order, say which it prefers"
        }
        "referer" => "the page whose link or form led here",
        "accept-encoding" => "compressions the client can undo (gzip, br)",
        "accept-language" => "the languages the user prefers",
        "content-length" => "how many bytes of body follow the empty line",
        "content-type" => "what the body is (a form sends application/x-www-form-urlencoded)",
        "transfer-encoding" => "chunked: the body comes in chunks, each with its size in front",
        "cache-control" => "whether a cached copy may be used",
        "upgrade-insecure-requests" => "the client would rather use https",
        "origin" => "the site a form or script came from",
        "cookie" => "state the server asked the client to keep",
        "sec-fetch-site" | "sec-fetch-mode" | "sec-fetch-dest" | "sec-fetch-user" => {
            "the browser saying why it made this request, so servers can refuse forged ones"
        }
        name if name.starts_with("sec-ch-") => "a client hint: details about the browser",
        _ => "a field this page has no note for; the server passes it over",
    }
}

/// The most bytes of a request a page echoes. Escaped for HTML a byte can become up to 13
/// characters (`\xff` → `\\xff` → `&#92;xff`), so echoing a whole 1 MiB body made a page of
/// several megabytes per request, and a few dozen clients that never read it held gigabytes.
/// The page shows the first part and says how much it left out.
pub const ECHO_LIMIT: usize = 4096;

/// The first [`ECHO_LIMIT`] bytes of `bytes`, and how many more there are.
fn capped(bytes: &[u8]) -> (&[u8], usize) {
    let shown = &bytes[..bytes.len().min(ECHO_LIMIT)];
    (shown, bytes.len() - shown.len())
}

/// The note under an echo that was cut.
fn more_bytes(hidden: usize) -> String {
    if hidden == 0 {
        return String::new();
    }
    format!("<p>… {hidden} more bytes, not shown: this page echoes the first {ECHO_LIMIT}.</p>\n")
}

/// The result of the form on `/`: the body as it arrived, and decoded.
fn form_page(request: &Request) -> String {
    let mut body = String::from(
        "<p>The browser encoded the form as <code>application/x-www-form-urlencoded</code>: \
         <code>name=value</code> pairs joined by <code>&amp;</code>, spaces as <code>+</code>, \
         bytes other than letters, digits and <code>*-._</code> as <code>%XX</code>.</p>\n<h2>Body as received</h2>\n<pre>",
    );
    let (shown, hidden) = capped(&request.body);
    body.push_str(&html_escape(&escape(shown)));
    body.push_str("</pre>\n");
    body.push_str(&more_bytes(hidden));
    body.push_str("<h2>Decoded</h2>\n<table>\n");
    // Decoded from what the page shows, so the table is bounded the same way.
    for (name, value) in decode_form(shown) {
        body.push_str(&format!(
            "<tr><th>{}</th><td><code>{}</code></td></tr>\n",
            html_escape(&name),
            html_escape(&value)
        ));
    }
    body.push_str("</table>\n<p><a href=\"/\">back</a></p>\n");
    page("Your form, decoded", &body)
}

/// `a=1&b=x+y%21` → `[("a", "1"), ("b", "x y!")]`. Bytes that are not UTF-8 become U+FFFD.
pub fn decode_form(body: &[u8]) -> Vec<(String, String)> {
    body.split(|&byte| byte == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = match pair.iter().position(|&byte| byte == b'=') {
                Some(equals) => (&pair[..equals], &pair[equals + 1..]),
                None => (pair, &[][..]),
            };
            (percent_decode(name), percent_decode(value))
        })
        .collect()
}

fn percent_decode(bytes: &[u8]) -> String {
    let hex = |digit: u8| char::from(digit).to_digit(16);
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut rest = bytes;
    while let Some((&byte, tail)) = rest.split_first() {
        rest = tail;
        match byte {
            b'+' => decoded.push(b' '),
            b'%' if let [high, low, after @ ..] = tail
                && let (Some(high), Some(low)) = (hex(*high), hex(*low)) =>
            {
                // Two hex digits are at most 0xff: the cast cannot truncate.
                decoded.push((high * 16 + low) as u8);
                rest = after;
            }
            // A `%` without two hex digits after it stays as it is.
            byte => decoded.push(byte),
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// Text made safe to put inside HTML elements and quoted attributes.
pub fn html_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// The frame every dynamic page shares; `title` is trusted, `body` already escaped.
fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>{title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <h1>{title}</h1>\n{body}</body>\n</html>\n"
    )
}

const STYLE: &str = "body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em}\
th{text-align:left;padding-right:1em;vertical-align:top}td{padding-right:1em}\
pre{background:#f4f4f4;padding:1em;overflow-x:auto}";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode_plus_and_percent_and_keep_broken_escapes() {
        assert_eq!(
            decode_form(b"message=hello%2C+server&empty=&flag&bad=%zz%4"),
            [
                ("message".into(), "hello, server".into()),
                ("empty".into(), String::new()),
                ("flag".into(), String::new()),
                ("bad".into(), "%zz%4".into()),
            ]
        );
        assert_eq!(
            decode_form(b"x=%E4%BD%A0%ff"),
            [("x".into(), "你\u{fffd}".into())]
        );
    }

    #[test]
    fn html_escape_leaves_no_markup() {
        assert_eq!(
            html_escape("<script>alert('x') & \"y\"</script>"),
            "&lt;script&gt;alert(&#39;x&#39;) &amp; &quot;y&quot;&lt;/script&gt;"
        );
    }
}
