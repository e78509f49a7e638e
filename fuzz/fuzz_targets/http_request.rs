//! Fuzz target: the HTTP request parser on arbitrary bytes.
//!
//! Besides "never panics", it checks what a server relies on:
//! - a complete request never claims more bytes than it was given;
//! - `Partial` never covers more than [`Limits::most_buffered`] bytes: a peer cannot make a
//!   server buffer without bound;
//! - the parser is incremental: every strict prefix of a complete request is `Partial`
//!   (so a request split across `recv`s parses the same as one `recv`), and no prefix of
//!   bytes that end in an error is `Complete`;
//! - a `RequestReader` fed the same bytes in pieces (as a server's `recv`s deliver them)
//!   answers what `Request::parse` answers at every step.
//!
//! Run: `cargo fuzz run --sanitizer none http_request` (see fuzz/README.md).
#![no_main]

use libfuzzer_sys::fuzz_target;
use socket_lab::http::request::{Limits, Request, RequestReader, Status};

/// Small limits so the fuzzer reaches every limit check with short inputs.
const SMALL: Limits = Limits {
    request_line: 64,
    head: 256,
    headers: 8,
    body: 128,
};

fuzz_target!(|data: &[u8]| {
    for limits in [Limits::default(), SMALL] {
        let whole = Request::parse(data, &limits);
        let complete_at = match &whole {
            Ok(Status::Complete(request)) => {
                assert!(request.len <= data.len(), "a request longer than its input");
                assert!(
                    request.head.len <= request.len,
                    "a head longer than its request"
                );
                Some(request.len)
            }
            Ok(Status::Partial) => {
                assert!(
                    data.len() <= limits.most_buffered(),
                    "Partial after {} bytes",
                    data.len()
                );
                None
            }
            Err(_) => None,
        };
        // The reader, fed in pieces whose sizes come from the input itself.
        let mut reader = RequestReader::new(limits);
        let mut cut = 0;
        while cut < data.len() {
            cut = (cut + 1 + usize::from(data[cut] % 64)).min(data.len());
            let verdict = reader.parse(&data[..cut]);
            assert_eq!(verdict, Request::parse(&data[..cut], &limits), "at {cut}");
            if verdict != Ok(Status::Partial) {
                break;
            }
        }
        // Every prefix, bounded so the check stays linear-ish on long inputs.
        let end = complete_at.unwrap_or(data.len()).min(512);
        for cut in 0..end {
            match Request::parse(&data[..cut], &limits) {
                Ok(Status::Partial) => {}
                Ok(Status::Complete(early)) => {
                    panic!(
                        "complete after {cut} bytes ({} used), but the whole input says {whole:?}",
                        early.len
                    )
                }
                Err(error) => {
                    if complete_at.is_some() {
                        panic!(
                            "prefix of {cut} bytes fails with {error:?}, the whole request parses"
                        );
                    }
                }
            }
        }
    }
});
