//! The response builder: what the walkthrough's server should have sent back.
//!
//! The walkthrough's server answers a browser with `server recv success`: no status line, no
//! headers. Browsers read that as HTTP/0.9, which they no longer accept on most ports. Claim 16
//! lists what a real response is: a status line, `Date`, `Content-Type`, `Content-Length`,
//! the empty line, then the HTML body:
//!
//! ```text
//! HTTP/1.1 200 OK\r\n
//! Date: Wed, 25 Nov 2026 13:10:14 GMT\r\n
//! Content-Type: text/html; charset=utf-8\r\n
//! Content-Length: 1234\r\n
//! \r\n
//! <!doctype html>...
//! ```
//!
//! - `Content-Length` counts bytes, not characters: `你好` is 6. It is how the client knows
//!   where this response ends and the next one on the same connection begins.
//! - `Date` is IMF-fixdate, always in GMT; [`http_date`] formats it from `SystemTime` with
//!   the calendar arithmetic written out (no date library needed).
//! - `Connection: close` tells the client this is the last response on the connection.
//! - A response to `HEAD` has the same headers as for `GET`, `Content-Length` included, and no
//!   body. `204 No Content` has neither body nor `Content-Length`.
//!
//! [`Response::encode`] builds the whole response in one buffer so the server sends it with one
//! `write`: headers and body written separately are two small segments, and Nagle's algorithm
//! can hold the second one back until the first is acknowledged (tens of milliseconds when the
//! client delays its ACK). `tests/engines/http_server.rs` checks the exact bytes.

use std::time::{SystemTime, UNIX_EPOCH};

/// `Content-Type` of the HTML pages.
pub const HTML: &str = "text/html; charset=utf-8";
/// `Content-Type` of plain-text bodies.
pub const TEXT: &str = "text/plain; charset=utf-8";

/// A response waiting to be sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: Option<&'static str>,
    /// Fields beyond the ones every response gets (`Allow` on a 405, say).
    pub extra_headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

/// Whether the connection stays open after this response, as the `Connection` field says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Connection {
    /// HTTP/1.1's default: no field needed.
    KeepAlive,
    /// HTTP/1.0 closes by default, so keeping it open must be said: `Connection: keep-alive`.
    KeepAliveHttp10,
    /// `Connection: close`: the server closes after this response.
    Close,
}

impl Response {
    /// A response with no body.
    pub fn empty(status: u16) -> Response {
        Response {
            status,
            content_type: None,
            extra_headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// An HTML page.
    pub fn html(status: u16, page: String) -> Response {
        Response {
            status,
            content_type: Some(HTML),
            extra_headers: Vec::new(),
            body: page.into_bytes(),
        }
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.extra_headers.push((name, value.into()));
        self
    }

    /// Whether this status may carry a body (RFC 9110: not 1xx, 204 or 304).
    fn has_body(&self) -> bool {
        !matches!(self.status, 100..=199 | 204 | 304)
    }

    /// The bytes to send: status line, fields, empty line and (unless `head_only`) the body.
    pub fn encode(&self, now: SystemTime, connection: Connection, head_only: bool) -> Vec<u8> {
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nDate: {}\r\n",
            self.status,
            reason_phrase(self.status),
            http_date(now)
        );
        if self.has_body() {
            if let Some(content_type) = self.content_type {
                head.push_str(&format!("Content-Type: {content_type}\r\n"));
            }
            head.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        }
        for (name, value) in &self.extra_headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        match connection {
            Connection::KeepAlive => {}
            Connection::KeepAliveHttp10 => head.push_str("Connection: keep-alive\r\n"),
            Connection::Close => head.push_str("Connection: close\r\n"),
        }
        head.push_str("\r\n");

        let send_body = self.has_body() && !head_only;
        let mut bytes =
            Vec::with_capacity(head.len() + if send_body { self.body.len() } else { 0 });
        bytes.extend_from_slice(head.as_bytes());
        if send_body {
            bytes.extend_from_slice(&self.body);
        }
        bytes
    }
}

/// The reason phrase for each status code this server sends. Clients ignore it; people read it.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        414 => "URI Too Long",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        505 => "HTTP Version Not Supported",
        // RFC 9112 allows an empty reason phrase.
        _ => "",
    }
}

/// `time` as an IMF-fixdate, the one date format HTTP senders use:
/// `Sun, 06 Nov 1994 08:49:37 GMT`. Times before 1970 are shown as 1970.
pub fn http_date(time: SystemTime) -> String {
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let seconds = time
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let days = seconds / 86_400;
    let second_of_day = seconds % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        // 1 January 1970, day 0, was a Thursday.
        WEEKDAYS[(days % 7) as usize],
        day,
        MONTHS[(month - 1) as usize],
        year,
        second_of_day / 3600,
        second_of_day % 3600 / 60,
        second_of_day % 60
    )
}

/// Year, month (1-12) and day (1-31) of the `days`-th day after 1 January 1970.
///
/// Howard Hinnant's `civil_from_days`: count in 400-year eras (146,097 days each, after which
/// the Gregorian calendar repeats) of years starting on 1 March, so the leap day is the last
/// day of a year and every month before it has a fixed length.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Shift the epoch from 1970-01-01 to 0000-03-01.
    let days = days + 719_468;
    let era = days / 146_097;
    let day_of_era = days % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    // Months from March: 0 = March ... 11 = February; 153 days per five months.
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = era * 400 + year_of_era + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    #[test]
    fn http_date_matches_the_rfc_example_and_calendar_edges() {
        // The example in RFC 9110 section 5.6.7.
        assert_eq!(http_date(at(784_111_777)), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(http_date(at(0)), "Thu, 01 Jan 1970 00:00:00 GMT");
        // A leap day, in a year divisible by 400, and the second before a new year.
        assert_eq!(http_date(at(951_782_400)), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(
            http_date(at(1_798_761_599)),
            "Thu, 31 Dec 2026 23:59:59 GMT"
        );
        // 2100 is not a leap year: 28 February is followed by 1 March.
        assert_eq!(
            http_date(at(4_107_542_400)),
            "Mon, 01 Mar 2100 00:00:00 GMT"
        );
    }

    #[test]
    fn encode_writes_status_line_fields_and_body() {
        let response = Response::html(200, "你好".to_string());
        assert_eq!(
            response.encode(at(0), Connection::KeepAlive, false),
            "HTTP/1.1 200 OK\r\nDate: Thu, 01 Jan 1970 00:00:00 GMT\r\n\
             Content-Type: text/html; charset=utf-8\r\nContent-Length: 6\r\n\r\n你好"
                .as_bytes()
        );
    }

    #[test]
    fn head_keeps_the_length_and_drops_the_body() {
        let response = Response::html(404, "gone".to_string());
        assert_eq!(
            response.encode(at(0), Connection::Close, true),
            b"HTTP/1.1 404 Not Found\r\nDate: Thu, 01 Jan 1970 00:00:00 GMT\r\n\
              Content-Type: text/html; charset=utf-8\r\nContent-Length: 4\r\n\
              Connection: close\r\n\r\n"
        );
    }

    #[test]
    fn every_status_the_server_sends_has_its_rfc_9110_reason_phrase() {
        for (status, phrase) in [
            (200, "OK"),
            (204, "No Content"),
            (400, "Bad Request"),
            (404, "Not Found"),
            (405, "Method Not Allowed"),
            (408, "Request Timeout"),
            (413, "Content Too Large"),
            (414, "URI Too Long"),
            (431, "Request Header Fields Too Large"),
            (500, "Internal Server Error"),
            (501, "Not Implemented"),
            (505, "HTTP Version Not Supported"),
            (299, ""),
        ] {
            assert_eq!(reason_phrase(status), phrase, "{status}");
        }
    }

    #[test]
    fn extra_fields_follow_the_length_and_precede_connection() {
        let response = Response::html(405, "no".to_string()).with_header("Allow", "GET, HEAD");
        assert_eq!(
            response.encode(at(0), Connection::Close, false),
            b"HTTP/1.1 405 Method Not Allowed\r\nDate: Thu, 01 Jan 1970 00:00:00 GMT\r\n\
              Content-Type: text/html; charset=utf-8\r\nContent-Length: 2\r\n\
              Allow: GET, HEAD\r\nConnection: close\r\n\r\nno"
        );
    }

    #[test]
    fn informational_and_not_modified_have_no_length_and_no_body() {
        // RFC 9110 section 6.4.1: 1xx, 204 and 304 never carry content.
        for status in [100, 199, 304] {
            let response = Response::html(status, "dropped".to_string());
            let head = format!("HTTP/1.1 {status} \r\nDate: Thu, 01 Jan 1970 00:00:00 GMT\r\n\r\n");
            assert_eq!(
                response.encode(at(0), Connection::KeepAlive, false),
                head.as_bytes()
            );
        }
        // Their neighbours do.
        for status in [200, 303, 305] {
            let head = format!(
                "HTTP/1.1 {status} {}\r\nDate: Thu, 01 Jan 1970 00:00:00 GMT\r\n\
                 Content-Length: 0\r\n\r\n",
                reason_phrase(status)
            );
            assert_eq!(
                Response::empty(status).encode(at(0), Connection::KeepAlive, false),
                head.as_bytes()
            );
        }
    }

    #[test]
    fn no_content_has_no_length_and_no_body() {
        let response = Response::empty(204);
        assert_eq!(
            response.encode(at(0), Connection::KeepAliveHttp10, false),
            b"HTTP/1.1 204 No Content\r\nDate: Thu, 01 Jan 1970 00:00:00 GMT\r\n\
              Connection: keep-alive\r\n\r\n"
        );
    }
}
