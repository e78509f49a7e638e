//! The request parser, case by case (in the style of httparse's `req!` table), then against
//! httparse itself.
//!
//! Every complete case is also fed to the parser cut short at every byte: each prefix must be
//! `Partial`, never an error and never a different request. That is the property a server
//! relies on when one `recv` returns half a request.

use proptest::prelude::*;
use socket_lab::http::request::{
    Framing, Head, Header, Limits, ParseError, Request, RequestReader, Status, Version,
};

/// Parses a request that must be complete, after checking every prefix of it is `Partial`.
fn complete(bytes: &[u8]) -> Request {
    complete_with(bytes, &Limits::default())
}

fn complete_with(bytes: &[u8], limits: &Limits) -> Request {
    for cut in 0..bytes.len() {
        assert_eq!(
            Request::parse(&bytes[..cut], limits),
            Ok(Status::Partial),
            "the first {cut} bytes of {:?} should be Partial",
            String::from_utf8_lossy(bytes)
        );
    }
    match Request::parse(bytes, limits) {
        Ok(Status::Complete(request)) => request,
        other => panic!(
            "expected a complete request from {:?}, got {other:?}",
            String::from_utf8_lossy(bytes)
        ),
    }
}

fn header(name: &str, value: &str) -> Header {
    Header {
        name: name.into(),
        value: value.into(),
    }
}

/// `req!(name, bytes, |request| checks)`: complete; `req!(name, bytes, Partial)`; or
/// `req!(name, bytes, Err(Kind) => status)`: rejected with this error and status code.
macro_rules! req {
    ($name:ident, $bytes:expr, |$request:ident| $checks:expr) => {
        #[test]
        fn $name() {
            let $request = complete($bytes);
            $checks
        }
    };
    ($name:ident, $bytes:expr, Partial) => {
        #[test]
        fn $name() {
            assert_eq!(
                Request::parse($bytes, &Limits::default()),
                Ok(Status::Partial)
            );
        }
    };
    ($name:ident, $bytes:expr, Err($error:ident) => $status:expr) => {
        #[test]
        fn $name() {
            assert_eq!(
                Request::parse($bytes, &Limits::default()),
                Err(ParseError::$error)
            );
            assert_eq!(ParseError::$error.status(), $status);
        }
    };
}

// ---- Complete requests ----

// The walkthrough's own capture: Chromium asking for /favicon.ico. The walkthrough lists
// exactly these parts: method, URL, version, and seven header fields.
req!(
    walkthrough_favicon_request_parses_to_the_fields_it_lists,
    b"GET /favicon.ico HTTP/1.1\r\n\
      Host: localhost:10000\r\n\
      Connection: keep-alive\r\n\
      User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Ubuntu Chromium/51.0.2704.79 Chrome/51.0.2704.79 Safari/537.36\r\n\
      Accept: */*\r\n\
      Referer: http://localhost:10000/\r\n\
      Accept-Encoding: gzip, deflate, sdch\r\n\
      Accept-Language: en-US,en;q=0.8\r\n\
      \r\n",
    |request| {
        let head = &request.head;
        assert_eq!(head.method, "GET");
        assert_eq!(head.target, "/favicon.ico");
        assert_eq!(head.version, Version::Http11);
        let names: Vec<&str> = head.headers.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "Host",
                "Connection",
                "User-Agent",
                "Accept",
                "Referer",
                "Accept-Encoding",
                "Accept-Language"
            ]
        );
        assert_eq!(head.header("host"), Some(&b"localhost:10000"[..]));
        assert_eq!(head.header("ACCEPT-LANGUAGE"), Some(&b"en-US,en;q=0.8"[..]));
        assert!(head.keep_alive());
        assert_eq!(head.framing, Framing::Empty);
        assert!(request.body.is_empty());
    }
);

req!(
    smallest_http11_request,
    b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    |request| {
        assert_eq!(request.head.request_line(), "GET / HTTP/1.1");
        assert_eq!(request.head.headers, [header("Host", "a")]);
        assert_eq!(request.len, 27);
    }
);

req!(
    http10_needs_no_host_and_closes_by_default,
    b"GET /x?y=1 HTTP/1.0\r\n\r\n",
    |request| {
        assert_eq!(request.head.version, Version::Http10);
        assert_eq!(request.head.target, "/x?y=1");
        assert!(!request.head.keep_alive());
    }
);

req!(
    http10_keep_alive_is_opt_in,
    b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
    |request| assert!(request.head.keep_alive())
);

req!(
    connection_close_is_found_in_a_list,
    b"GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade, close\r\n\r\n",
    |request| assert!(!request.head.keep_alive())
);

req!(
    value_whitespace_is_trimmed_and_inner_kept,
    b"GET / HTTP/1.1\r\nHost: a\r\nX-Spaced:\t a b \t\r\nX-Empty:\r\n\r\n",
    |request| {
        assert_eq!(
            request.head.headers,
            [
                header("Host", "a"),
                header("X-Spaced", "a b"),
                header("X-Empty", "")
            ]
        );
    }
);

req!(
    obs_text_in_a_value_is_kept_as_bytes,
    b"GET / HTTP/1.1\r\nHost: a\r\nX-Name: caf\xc3\xa9 \xff\r\n\r\n",
    |request| assert_eq!(
        request.head.header("x-name"),
        Some(&b"caf\xc3\xa9 \xff"[..])
    )
);

req!(
    bare_lf_line_ends_are_accepted,
    b"GET / HTTP/1.1\nHost: a\n\n",
    |request| assert_eq!(request.head.headers, [header("Host", "a")])
);

req!(
    leading_empty_lines_are_skipped,
    b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
    |request| {
        assert_eq!(request.head.method, "GET");
        assert_eq!(request.len, 31);
    }
);

req!(
    content_length_body,
    b"POST /form HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
    |request| {
        assert_eq!(request.head.framing, Framing::Length(5));
        assert_eq!(request.body, b"hello");
    }
);

req!(
    repeated_equal_content_lengths_agree,
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok",
    |request| assert_eq!(request.body, b"ok")
);

req!(
    chunked_body_is_decoded_with_extensions_and_trailers,
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n\
      5;name=value\r\nhello\r\nA\r\n, world!!!\r\n0\r\nX-Trailer: yes\r\n\r\n",
    |request| {
        assert_eq!(request.head.framing, Framing::Chunked);
        assert_eq!(request.body, b"hello, world!!!");
    }
);

req!(
    methods_are_any_token,
    b"M-SEARCH * HTTP/1.1\r\nHost: a\r\n\r\n",
    |request| {
        assert_eq!(request.head.method, "M-SEARCH");
        assert_eq!(request.head.target, "*");
    }
);

#[test]
fn a_pipelined_second_request_starts_where_the_first_ends() {
    let two = b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n";
    let Ok(Status::Complete(first)) = Request::parse(two, &Limits::default()) else {
        panic!("the first request should be complete");
    };
    assert_eq!(first.head.target, "/1");
    let second = complete(&two[first.len..]);
    assert_eq!(second.head.target, "/2");
}

// ---- Partial input: not an error ----

req!(partial_empty, b"", Partial);
req!(partial_half_a_crlf, b"GET / HTTP/1.1\r", Partial);
req!(
    partial_before_the_empty_line,
    b"GET / HTTP/1.1\r\nHost: a\r\n",
    Partial
);
req!(
    partial_body,
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nhello",
    Partial
);
req!(
    partial_chunk,
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
    Partial
);

// ---- Rejections, each with its status ----

req!(method_with_a_slash, b"GE/T / HTTP/1.1\r\n", Err(Method) => 400);
req!(method_empty, b" / HTTP/1.1\r\n", Err(Method) => 400);
req!(two_spaces_after_method, b"GET  / HTTP/1.1\r\n", Err(Target) => 400);
req!(target_with_a_control_byte, b"GET /\x01 HTTP/1.1\r\n", Err(Target) => 400);
req!(target_with_utf8, "GET /ä HTTP/1.1\r\n".as_bytes(), Err(Target) => 400);
req!(version_lowercase, b"GET / http/1.1\r\n", Err(Version) => 400);
req!(version_missing, b"GET /\r\n\r\n", Err(Target) => 400);
req!(space_after_version, b"GET / HTTP/1.1 \r\n", Err(Version) => 400);
req!(version_two_digits, b"GET / HTTP/1.10\r\n", Err(Version) => 400);
req!(version_2, b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", Err(UnsupportedVersion) => 505);
req!(version_0_9, b"GET / HTTP/0.9\r\n\r\n", Err(UnsupportedVersion) => 505);
req!(bare_cr_in_request_line, b"GET / HTTP/1.1\rHost: a\r\n\r\n", Err(BareCr) => 400);
req!(bare_cr_in_a_header, b"GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n", Err(BareCr) => 400);
req!(bare_cr_ending_a_header, b"GET / HTTP/1.1\r\nHost: a\r\rb\r\n\r\n", Err(BareCr) => 400);
req!(obs_fold, b"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n 2\r\n\r\n", Err(ObsFold) => 400);
req!(whitespace_before_first_header, b"GET / HTTP/1.1\r\n Host: a\r\n\r\n", Err(ObsFold) => 400);
req!(space_before_colon, b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", Err(SpaceBeforeColon) => 400);
req!(header_name_not_a_token, b"GET / HTTP/1.1\r\nHo(st: a\r\n\r\n", Err(HeaderName) => 400);
req!(header_without_colon, b"GET / HTTP/1.1\r\nHost\r\n\r\n", Err(HeaderName) => 400);
req!(header_name_empty, b"GET / HTTP/1.1\r\n: a\r\n\r\n", Err(HeaderName) => 400);
req!(nul_in_a_value, b"GET / HTTP/1.1\r\nHost: a\0b\r\n\r\n", Err(HeaderValue) => 400);
req!(http11_without_host, b"GET / HTTP/1.1\r\n\r\n", Err(MissingHost) => 400);
req!(two_hosts, b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", Err(DuplicateHost) => 400);
req!(
    content_length_signed,
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n",
    Err(ContentLength) => 400
);
req!(
    content_length_list,
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n",
    Err(ContentLength) => 400
);
req!(
    content_length_empty,
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n",
    Err(ContentLength) => 400
);
req!(
    content_lengths_disagree,
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
    Err(ConflictingContentLength) => 400
);
req!(
    content_length_with_transfer_encoding,
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
    Err(LengthWithTransferEncoding) => 400
);
req!(
    gzip_transfer_coding,
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
    Err(UnsupportedTransferEncoding) => 501
);
req!(
    chunk_size_not_hex,
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    Err(Chunk) => 400
);
req!(
    chunk_data_longer_than_its_size,
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n",
    Err(Chunk) => 400
);
req!(
    content_length_beyond_u64,
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n",
    Err(BodyTooLarge) => 413
);
req!(
    content_length_over_the_limit_is_refused_before_the_body,
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1048577\r\n\r\n",
    Err(BodyTooLarge) => 413
);
req!(
    huge_chunk_is_refused_before_its_data,
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffff\r\n",
    Err(BodyTooLarge) => 413
);

// ---- Found by the fault suite and the fuzzer (issue 7), one case each ----

// RFC 9112 section 6.3: without chunked as the final coding the body length is unknown, and
// a server MUST answer 400 and close. It used to be 501 (an unsupported coding).
req!(
    transfer_encoding_without_final_chunked,
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
    Err(ChunkedNotLast) => 400
);
req!(
    chunked_then_another_coding,
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
    Err(ChunkedNotLast) => 400
);
req!(
    chunked_twice,
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
    Err(ChunkedNotLast) => 400
);
req!(
    transfer_encoding_empty,
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n\r\n",
    Err(ChunkedNotLast) => 400
);
// A list may have empty elements; `chunked,` is `chunked`.
req!(
    chunked_with_an_empty_list_element,
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: , chunked,\r\n\r\n0\r\n\r\n",
    |request| assert_eq!(request.head.framing, Framing::Chunked)
);
// RFC 9112 section 6.1: HTTP/1.0 has no transfer codings; it was decoded as chunked before.
req!(
    transfer_encoding_in_http10,
    b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    Err(TransferEncodingInHttp10) => 400
);
// RFC 9112 section 3.2: a Host with an invalid value is a 400; any value was accepted before.
req!(host_with_a_space, b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", Err(HostValue) => 400);
req!(host_with_a_path, b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", Err(HostValue) => 400);
req!(host_with_userinfo, b"GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", Err(HostValue) => 400);
req!(host_port_not_digits, b"GET / HTTP/1.1\r\nHost: a:8x\r\n\r\n", Err(HostValue) => 400);
req!(
    host_forms_that_are_valid,
    b"GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n",
    |request| assert_eq!(request.head.header("host"), Some(&b"[::1]:8080"[..]))
);
req!(
    host_empty_is_valid,
    b"GET / HTTP/1.1\r\nHost:\r\n\r\n",
    |request| assert_eq!(request.head.header("host"), Some(&b""[..]))
);
// RFC 9110 section 2.5: a higher minor version is served as the highest we know. It was 505.
req!(
    http_1_2_is_served_as_1_1,
    b"GET / HTTP/1.2\r\nHost: a\r\n\r\n",
    |request| assert_eq!(request.head.version, Version::Http11)
);
// Trailer fields obey the header rules; before, any line passed.
req!(
    obs_fold_in_a_trailer,
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: 1\r\n 2\r\n\r\n",
    Err(ObsFold) => 400
);
req!(
    trailer_line_without_a_colon,
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nnocolon\r\n\r\n",
    Err(HeaderName) => 400
);

/// Found by `cargo fuzz` (target `http_request`): a trailer over the head limit was refused
/// when the input stopped mid-line but accepted when every line was complete, so the verdict
/// depended on how the bytes were split across `recv`s, and a peer sending whole short lines
/// could grow the buffer forever.
#[test]
fn the_trailer_limit_holds_however_the_bytes_arrive() {
    let request = format!(
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n{}\r\n",
        "X: 1\r\n".repeat(20)
    );
    let limits = Limits {
        headers: 100,
        ..small_limits()
    };
    assert_eq!(
        Request::parse(request.as_bytes(), &limits),
        Err(ParseError::HeadTooLarge)
    );
    // Ending exactly at a line end, with no empty line yet, is refused too.
    let open_ended = &request[..request.len() - 2];
    assert_eq!(
        Request::parse(open_ended.as_bytes(), &limits),
        Err(ParseError::HeadTooLarge)
    );
}

/// Found by reading for the fault suite: an endless run of hex digits in a chunk-size line was
/// `Partial` forever, so the server buffered it until the request timeout.
#[test]
fn an_endless_chunk_size_is_refused_before_it_ends() {
    let request = format!(
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n{}",
        "0".repeat(100)
    );
    assert_eq!(
        Request::parse(request.as_bytes(), &Limits::default()),
        Err(ParseError::BodyTooLarge)
    );
}

// ---- Limits, checked on partial input too ----

fn small_limits() -> Limits {
    Limits {
        request_line: 32,
        head: 64,
        headers: 2,
        body: 8,
    }
}

#[test]
fn a_long_request_line_is_414_before_it_ends() {
    let line = format!("GET /{} HTTP/1.1", "a".repeat(40));
    // No CRLF yet: the limit is hit on partial input, not when memory runs out.
    assert_eq!(
        Request::parse(line.as_bytes(), &small_limits()),
        Err(ParseError::RequestLineTooLong)
    );
    assert_eq!(ParseError::RequestLineTooLong.status(), 414);
}

#[test]
fn a_long_head_is_431_before_it_ends() {
    let head = format!("GET / HTTP/1.1\r\nHost: a\r\nX: {}", "b".repeat(60));
    assert_eq!(
        Request::parse(head.as_bytes(), &small_limits()),
        Err(ParseError::HeadTooLarge)
    );
    let endless_empty_lines = "\r\n".repeat(40);
    assert_eq!(
        Request::parse(endless_empty_lines.as_bytes(), &small_limits()),
        Err(ParseError::HeadTooLarge)
    );
}

#[test]
fn too_many_headers_is_431() {
    let head = b"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n";
    assert_eq!(
        Request::parse(head, &small_limits()),
        Err(ParseError::TooManyHeaders)
    );
    assert_eq!(ParseError::TooManyHeaders.status(), 431);
}

#[test]
fn bodies_at_the_limit_pass_and_one_byte_more_is_413() {
    let at_limit = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 8\r\n\r\n12345678";
    assert_eq!(complete_with(at_limit, &small_limits()).body, b"12345678");
    let chunked =
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n12345\r\n4\r\n";
    assert_eq!(
        Request::parse(chunked, &small_limits()),
        Err(ParseError::BodyTooLarge)
    );
}

#[test]
fn every_error_message_is_one_line_of_words() {
    // The server shows these on its error pages; they must read as sentences.
    let all = ParseError::ALL;
    for error in all {
        let message = error.to_string();
        assert!(!message.is_empty() && !message.contains('\n'), "{error:?}");
    }
}

#[test]
fn each_error_is_answered_with_the_status_rfc_9110_gives_it() {
    // Written out one by one, so that a status changed in the parser fails here.
    use ParseError::*;
    let expected = |error: ParseError| match error {
        RequestLineTooLong => 414, // URI Too Long, RFC 9110 section 15.5.15
        HeadTooLarge | TooManyHeaders => 431, // Request Header Fields Too Large, RFC 6585
        BodyTooLarge => 413,       // Content Too Large, section 15.5.14
        UnsupportedVersion => 505, // HTTP Version Not Supported, section 15.6.6
        UnsupportedTransferEncoding => 501, // Not Implemented, RFC 9112 section 6.1
        Method
        | Target
        | Version
        | BareCr
        | ObsFold
        | SpaceBeforeColon
        | HeaderName
        | HeaderValue
        | MissingHost
        | DuplicateHost
        | HostValue
        | ContentLength
        | ConflictingContentLength
        | LengthWithTransferEncoding
        | ChunkedNotLast
        | TransferEncodingInHttp10
        | Chunk => 400,
    };
    for error in ParseError::ALL {
        assert_eq!(error.status(), expected(error), "{error:?}");
    }
}

// ---- Differential: httparse as the oracle ----
//
// Deliberate differences from httparse, so the generators below stay inside what both accept:
// - An HTTP/1.1 request needs exactly one Host here (RFC 9112 section 3.2); httparse leaves
//   that to the caller. Every generated 1.1 request carries one Host.
// - Content-Length and Transfer-Encoding are checked here (plain decimal, no conflicts, only
//   chunked); httparse does not interpret any field. The generators do not emit them.
// - `HTTP/x.y` other than 1.0 and 1.1 is a 505 here; httparse rejects it as a bad version.
// - A request target here is visible ASCII only; httparse also takes bytes above 0x7F.
// - httparse does not enforce limits on line length or head size.

/// A field name: a token, not one of the fields this parser interprets.
fn field_name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,20}".prop_filter("interpreted fields are generated apart", |n| {
        !["host", "content-length", "transfer-encoding"].contains(&n.to_ascii_lowercase().as_str())
    })
}

/// A field value: visible ASCII with inner spaces and tabs, no leading or trailing whitespace.
fn field_value() -> impl Strategy<Value = String> {
    "([!-~]([ \t!-~]{0,30}[!-~])?)?"
}

prop_compose! {
    fn well_formed_request()(
        method in "[A-Z][A-Za-z0-9!#$%&'*+.^_`|~-]{0,9}",
        target in "/[!-~]{0,40}",
        minor in 0u8..=1,
        host in "[a-z0-9.-]{1,15}(:[0-9]{1,5})?",
        fields in prop::collection::vec((field_name(), field_value()), 0..12),
        host_position in 0usize..12,
        crlf in any::<bool>(),
    ) -> (Vec<u8>, Vec<(String, String)>) {
        let mut fields = fields;
        if minor == 1 {
            fields.insert(host_position.min(fields.len()), ("Host".to_string(), host));
        }
        let eol = if crlf { "\r\n" } else { "\n" };
        let mut text = format!("{method} {target} HTTP/1.{minor}{eol}");
        for (name, value) in &fields {
            text.push_str(&format!("{name}: {value}{eol}"));
        }
        text.push_str(eol);
        (text.into_bytes(), fields)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// On requests both must accept, both agree on every part.
    #[test]
    fn agrees_with_httparse_on_well_formed_requests((bytes, fields) in well_formed_request()) {
        let mut oracle_headers = [httparse::EMPTY_HEADER; 16];
        let mut oracle = httparse::Request::new(&mut oracle_headers);
        let oracle_len = match oracle.parse(&bytes) {
            Ok(httparse::Status::Complete(len)) => len,
            other => panic!("httparse did not accept {:?}: {other:?}", String::from_utf8_lossy(&bytes)),
        };
        let ours = match Head::parse(&bytes, &Limits::default()) {
            Ok(Status::Complete(head)) => head,
            other => panic!("we did not accept {:?}: {other:?}", String::from_utf8_lossy(&bytes)),
        };
        prop_assert_eq!(Some(ours.method.as_str()), oracle.method);
        prop_assert_eq!(Some(ours.target.as_str()), oracle.path);
        let ours_minor = match ours.version { Version::Http10 => 0, Version::Http11 => 1 };
        prop_assert_eq!(Some(ours_minor), oracle.version);
        prop_assert_eq!(ours.len, oracle_len);
        let oracle_fields: Vec<(String, Vec<u8>)> = oracle
            .headers
            .iter()
            .map(|h| (h.name.to_string(), h.value.to_vec()))
            .collect();
        let our_fields: Vec<(String, Vec<u8>)> = ours
            .headers
            .iter()
            .map(|h| (h.name.clone(), h.value.clone()))
            .collect();
        prop_assert_eq!(&our_fields, &oracle_fields);
        let generated: Vec<(String, Vec<u8>)> =
            fields.into_iter().map(|(n, v)| (n, v.into_bytes())).collect();
        prop_assert_eq!(our_fields, generated);
    }

    /// On well-formed requests with a few bytes overwritten (by CR, LF, NUL, space, tab,
    /// colon, DEL, 0xFF or any byte): no panic, and whatever we call complete, httparse calls
    /// complete too, with the same request line and length. The reverse does not hold: we
    /// are stricter, as listed above.
    #[test]
    fn never_panics_and_never_accepts_what_httparse_rejects(
        (request, _) in well_formed_request(),
        mutations in prop::collection::vec(
            (any::<prop::sample::Index>(), prop_oneof![
                3 => prop::sample::select(b"\r\n\0 \t:\x7f\xff".to_vec()),
                1 => any::<u8>(),
            ]),
            1..4,
        ),
    ) {
        let mut bytes = request;
        for (index, byte) in mutations {
            let at = index.index(bytes.len());
            bytes[at] = byte;
        }
        let ours = Head::parse(&bytes, &Limits::default());
        if let Ok(Status::Complete(head)) = ours {
            let mut oracle_headers = [httparse::EMPTY_HEADER; 64];
            let mut oracle = httparse::Request::new(&mut oracle_headers);
            match oracle.parse(&bytes) {
                Ok(httparse::Status::Complete(len)) => {
                    prop_assert_eq!(head.len, len);
                    prop_assert_eq!(Some(head.method.as_str()), oracle.method);
                    prop_assert_eq!(Some(head.target.as_str()), oracle.path);
                }
                other => prop_assert!(
                    false,
                    "we accepted {:?} but httparse says {:?}",
                    String::from_utf8_lossy(&bytes),
                    other
                ),
            }
        }
    }
}

#[test]
fn a_chunked_body_of_exactly_the_limit_passes_and_one_byte_more_is_413() {
    // small_limits() allows 8 body bytes, however they are chunked.
    let at_limit =
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n12345\r\n3\r\n678\r\n0\r\n\r\n";
    assert_eq!(complete_with(at_limit, &small_limits()).body, b"12345678");
    let one_more =
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n12345\r\n4\r\n6789\r\n0\r\n\r\n";
    assert_eq!(
        Request::parse(one_more, &small_limits()),
        Err(ParseError::BodyTooLarge)
    );
}

#[test]
fn connection_close_is_a_case_insensitive_token_in_a_list() {
    for value in [
        "close",
        "Close",
        "CLOSE",
        "keep-alive, close",
        "foo ,  close ",
        "Upgrade,CLOSE",
    ] {
        let bytes = format!("GET / HTTP/1.1\r\nHost: a\r\nConnection: {value}\r\n\r\n");
        let request = complete_with(bytes.as_bytes(), &Limits::default());
        assert!(!request.head.keep_alive(), "Connection: {value} must close");
    }
    for value in ["keep-alive", "closed", "enclose", "clo se"] {
        let bytes = format!("GET / HTTP/1.1\r\nHost: a\r\nConnection: {value}\r\n\r\n");
        let request = complete_with(bytes.as_bytes(), &Limits::default());
        assert!(
            request.head.keep_alive(),
            "Connection: {value} is not close"
        );
    }
}

// ---- Found by cargo-mutants: each limit's exact edge, and the accessors a server uses ----

#[test]
fn a_request_line_of_exactly_the_limit_passes_and_one_byte_more_is_414() {
    // small_limits() allows 32 bytes of request line, CRLF included: 15 + the target.
    let at_limit = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(16));
    assert_eq!(at_limit.find("\r\n"), Some(30));
    assert_eq!(
        complete_with(at_limit.as_bytes(), &small_limits())
            .head
            .target,
        format!("/{}", "a".repeat(16))
    );
    // Empty lines before the request line are not part of it.
    let after_empty_lines = format!("\r\n\n{at_limit}");
    let request = complete_with(after_empty_lines.as_bytes(), &small_limits());
    assert_eq!(request.len, after_empty_lines.len());
    let one_more = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(17));
    assert_eq!(
        Request::parse(one_more.as_bytes(), &small_limits()),
        Err(ParseError::RequestLineTooLong)
    );
}

#[test]
fn a_head_of_exactly_the_limit_passes_and_one_byte_more_is_431() {
    // small_limits() allows 64 bytes of head: 32 of them here are the X field's value.
    let head = |value_len: usize| {
        format!(
            "GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n",
            "b".repeat(value_len)
        )
    };
    let at_limit = head(32);
    assert_eq!(at_limit.len(), 64);
    assert_eq!(
        complete_with(at_limit.as_bytes(), &small_limits()).head.len,
        64
    );
    assert_eq!(
        Request::parse(head(33).as_bytes(), &small_limits()),
        Err(ParseError::HeadTooLarge)
    );
}

#[test]
fn most_buffered_is_the_sum_of_every_part_a_request_can_hold_back() {
    // Head twice (the head, and a trailer as large), the encoded body (twice the body plus
    // 4 KiB of framing), one chunk-size line, the decoded body, and 4 bytes of line ends.
    assert_eq!(
        Limits::default().most_buffered(),
        2 * 16 * 1024 + (2 * 1024 * 1024 + 4096) + 1024 + 1024 * 1024 + 4
    );
    let huge = Limits {
        head: usize::MAX,
        ..Limits::default()
    };
    assert_eq!(
        huge.most_buffered(),
        usize::MAX,
        "saturates, never overflows"
    );
}

#[test]
fn the_host_is_the_host_field_unless_the_target_is_a_whole_url() {
    let origin = complete(b"GET /x HTTP/1.1\r\nHost: example:8080\r\n\r\n");
    assert_eq!(origin.head.host(), Some(&b"example:8080"[..]));
    // RFC 9112 section 3.2.2: the authority in an absolute-form target wins.
    let absolute = complete(b"GET http://other:81/x HTTP/1.1\r\nHost: example\r\n\r\n");
    assert_eq!(absolute.head.host(), Some(&b"other:81"[..]));
    // HTTP/1.0 may leave it out.
    let old = complete(b"GET / HTTP/1.0\r\n\r\n");
    assert_eq!(old.head.host(), None);
}

#[test]
fn a_reader_shows_the_head_as_soon_as_it_is_complete() {
    let head =
        b"POST /form HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n";
    let mut reader = RequestReader::new(Limits::default());
    assert_eq!(reader.parse(&head[..20]), Ok(Status::Partial));
    assert!(reader.head().is_none());
    // The head is in, the body is not: a server answers `Expect: 100-continue` now.
    assert_eq!(reader.parse(head), Ok(Status::Partial));
    let expect = reader.head().and_then(|head| head.header("expect"));
    assert_eq!(expect, Some(&b"100-continue"[..]));
    let whole = [&head[..], b"abc"].concat();
    let Ok(Status::Complete(request)) = reader.parse(&whole) else {
        panic!("the body completes the request");
    };
    assert_eq!(request.body, b"abc");
    assert_eq!(request.len, whole.len());
}
