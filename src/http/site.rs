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
//! Everything a peer sent is shown through [`shown`]: [`escape`] first, so a control, format
//! or separator character (U+202E RIGHT-TO-LEFT OVERRIDE, U+200B ZERO WIDTH SPACE) is a
//! visible `\u{202e}` that cannot reorder or hide the text around it, as in the server's log;
//! then [`html_escape`], so a header value like `<script>` is text on the page, never markup.
//!
//! The page is plain HTML with a built-in style sheet (`STYLE`) and no JavaScript. It is
//! the page learners screenshot, so it must read well in any window: `tests/page_layout.rs`
//! loads it in headless Chromium from 360 to 2000 px wide and checks that nothing scrolls
//! sideways, no field name breaks, and every "what it is for" column is wide enough to read.

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
    // A browser's request makes a page of about 8 KiB: room for it at once, not by doubling.
    let mut body = String::with_capacity(8 * 1024);
    body.push_str(&format!(
        "<p>The server received this request from <code>{}</code> and parsed it.</p>\n",
        html_escape(&peer.to_string())
    ));

    body.push_str("<h2>Request line</h2>\n");
    body.push_str(&format!(
        "<p id=\"request-line\"><code>{}</code></p>\n{}",
        shown(head.request_line().as_bytes()),
        table_start("part")
    ));
    for (part, value, meaning) in [
        (
            "method",
            shown(head.method.as_bytes()),
            "what the client asks the server to do",
        ),
        (
            "target",
            shown(head.target.as_bytes()),
            "which resource: usually the path and query of the URL",
        ),
        (
            "version",
            shown(head.version.to_string().as_bytes()),
            "the protocol version; it sets whether the connection stays open by default",
        ),
        (
            "host",
            head.host().map_or("(none)".into(), shown),
            "the site asked for: the target's authority when the target is a whole URL (absolute-form, RFC 9112 section 3.2.2), else the Host field",
        ),
    ] {
        body.push_str(&row(part, &value, meaning));
    }
    body.push_str(TABLE_END);

    body.push_str("<h2>Header fields</h2>\n");
    body.push_str(&table_start("field"));
    for header in &head.headers {
        body.push_str(&row(
            &shown(header.name.as_bytes()),
            &shown(&header.value),
            explain_header(&header.name),
        ));
    }
    body.push_str(TABLE_END);

    body.push_str(
        "<h2>Raw bytes</h2>\n<p>Exactly the bytes the server received for this request, with \
         <code>\\r\\n</code> shown. The empty line at the end of the head is how the server knows \
         the head is over.</p>\n<pre>",
    );
    let (echoed, hidden) = capped(raw);
    for line in echoed.split_inclusive(|&byte| byte == b'\n') {
        body.push_str(&shown(line));
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

/// The start of a table of fields: a name, its value, and what it is for. The column widths
/// are set here (not by the longest value, as an HTML table does by default), so a long
/// `User-Agent` wraps inside its cell instead of pushing the explanations off the screen.
fn table_start(name_heading: &str) -> String {
    format!(
        "<table class=\"fields\">\n\
         <colgroup><col class=\"name\"><col class=\"value\"><col class=\"purpose\"></colgroup>\n\
         <thead><tr><th>{name_heading}</th><th>value</th><th>what it is for</th></tr></thead>\n\
         <tbody>\n"
    )
}

const TABLE_END: &str = "</tbody>\n</table>\n";

/// One row of a [`table_start`] table; `name` and `value` already escaped.
fn row(name: &str, value: &str, purpose: &str) -> String {
    format!(
        "<tr><th>{name}</th><td><code>{value}</code></td><td class=\"purpose\">{purpose}</td></tr>\n"
    )
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
    let (echoed, hidden) = capped(&request.body);
    body.push_str(&shown(echoed));
    body.push_str("</pre>\n");
    body.push_str(&more_bytes(hidden));
    body.push_str(
        "<h2>Decoded</h2>\n<table class=\"fields\">\n\
         <colgroup><col class=\"name\"><col class=\"value\"></colgroup>\n\
         <thead><tr><th>name</th><th>value</th></tr></thead>\n<tbody>\n",
    );
    // Decoded from what the page shows, so the table is bounded the same way.
    for (name, value) in decode_form(echoed) {
        body.push_str(&format!(
            "<tr><th>{}</th><td><code>{}</code></td></tr>\n",
            shown(name.as_bytes()),
            shown(value.as_bytes())
        ));
    }
    body.push_str(TABLE_END);
    body.push_str("<p><a href=\"/\">back</a></p>\n");
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

/// Bytes a peer sent, as the page shows them: [`escape`]d as the log shows them (so
/// `evil\u{202e}txt.exe` reads as that, not as `evilexe.txt`, and bytes that are not UTF-8 as
/// `\xff`), then [`html_escape`]d.
pub fn shown(bytes: &[u8]) -> String {
    html_escape(&escape(bytes))
}

/// Text made safe to put inside HTML elements and quoted attributes.
pub fn html_escape(text: &str) -> String {
    if !text.contains(['&', '<', '>', '"', '\'']) {
        return text.to_owned();
    }
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

/// The frame every dynamic page shares; `title` is trusted, `body` already escaped. The
/// viewport line tells a phone the page is made for its width; without it a phone lays the
/// page out 980 px wide and shrinks it to fit.
fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title}</title>\n<style>\n{STYLE}</style>\n</head>\n<body>\n\
         <h1>{title}</h1>\n{body}</body>\n</html>\n"
    )
}

/// The style sheet of every dynamic page, built into the binary.
///
/// - `overflow-wrap: anywhere` on everything: a value with no space in it (a `User-Agent`, a
///   cookie, a 4 KiB target) may break between any two characters, so no peer can make the
///   page wider than the window.
/// - `table-layout: fixed` with set column widths: by default an HTML table sizes its columns
///   by their longest content, so one long value took the whole width and squeezed the
///   explanations into a sliver, or pushed them off the screen. Here the name column is wide
///   enough for `Upgrade-Insecure-Requests` on one line, the explanations get 35%, the value
///   the rest.
/// - `vertical-align: baseline`: the first lines of a row's name, value and explanation sit on
///   one line, however many lines each cell wraps to.
/// - Below 44em (704 px at the default font size, where three columns get too narrow) each
///   row becomes a block: the name, then its value, then what it is for, each the full width.
/// - Raw bytes wrap too (`pre-wrap`): every line ends in a visible `\r\n`, so a wrapped line
///   cannot be mistaken for two.
const STYLE: &str = "\
body { font-family: sans-serif; line-height: 1.4; max-width: 72em; margin: 2em auto; padding: 0 1em; overflow-wrap: anywhere; }
table.fields { width: 100%; table-layout: fixed; border-collapse: collapse; margin-bottom: 1em; }
col.name { width: 18em; }
col.purpose { width: 35%; }
th, td { text-align: left; vertical-align: baseline; padding: .4em 1em .4em 0; border-top: 1px solid #ddd; }
thead th { font-weight: normal; color: #666; border-top: none; }
pre { background: #f4f4f4; padding: 1em; white-space: pre-wrap; }
@media (max-width: 44em) {
  table.fields, table.fields tbody, table.fields tr, table.fields th, table.fields td { display: block; }
  table.fields thead { display: none; }
  table.fields tr { border-top: 1px solid #ddd; padding: .5em 0; }
  table.fields th, table.fields td { border: none; padding: 0; }
  table.fields td { margin-top: .2em; }
}
";

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

    /// The page `respond` makes for `request`, as text.
    fn page_for(request: &[u8]) -> String {
        use crate::http::request::{Limits, Status};
        let parsed = match Request::parse(request, &Limits::default()) {
            Ok(Status::Complete(parsed)) => parsed,
            other => panic!("{other:?} for {}", escape(request)),
        };
        let peer = Address::Inet("127.0.0.1:40000".parse().expect("an address"));
        let response = respond(&parsed, request, &peer);
        String::from_utf8(response.body).expect("a UTF-8 page")
    }

    #[test]
    fn bidi_and_invisible_characters_a_peer_sent_are_shown_not_obeyed() {
        // U+202E RIGHT-TO-LEFT OVERRIDE would show `evil<U+202E>txt.exe` as `evilexe.txt`;
        // U+200B is invisible; 0xff is not UTF-8.
        let page = page_for(
            &[
                "GET / HTTP/1.1\r\nHost: a\r\nX-Note: a\u{200b}b\r\nX-File: evil\u{202e}txt.exe"
                    .as_bytes(),
                b"\xff\r\n\r\n",
            ]
            .concat(),
        );
        assert!(
            page.contains(
                r#"<tr><th>X-File</th><td><code>evil\u{202e}txt.exe\xff</code></td><td class="purpose">"#
            ),
            "{page}"
        );
        assert!(
            page.contains(r"<tr><th>X-Note</th><td><code>a\u{200b}b</code></td>"),
            "{page}"
        );
        assert!(
            !page.contains(['\u{202e}', '\u{200b}', '\u{fffd}']),
            "{page}"
        );

        // The form's decoded values: `%E2%80%AE` is the same override, percent-encoded.
        let body = "message=evil%E2%80%AEtxt.exe";
        let page = page_for(
            format!(
                "POST /form HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
        assert!(
            page.contains(r"<tr><th>message</th><td><code>evil\u{202e}txt.exe</code></td>"),
            "{page}"
        );
        assert!(!page.contains('\u{202e}'), "{page}");
    }

    #[test]
    fn html_escape_leaves_no_markup() {
        assert_eq!(
            html_escape("<script>alert('x') & \"y\"</script>"),
            "&lt;script&gt;alert(&#39;x&#39;) &amp; &quot;y&quot;&lt;/script&gt;"
        );
    }
}
