//! The scenario lexer: one line of text in, tokens out, and a cursor the parser reads them
//! with.
//!
//! A line is words (`alice`, `recv`, `1024`, `300ms`), punctuation (`:` `=` `*` `+`) and
//! byte strings written as Rust string literals: `"a\r\n\0\xff\u{85}"` with escapes, or
//! `r"\xff"` raw, where the backslash is itself. `#` starts a comment that runs to the end of
//! the line. Every number the file gives is range-checked here, so a runner never meets a
//! size or a duration it cannot honour.

use std::time::Duration;

use crate::escape::escape;

/// The largest payload one file may build, all expressions together: 64 MiB.
pub const MAX_PAYLOAD: usize = 64 * 1024 * 1024;
/// The longest any one wait may be (`timeout`, `settimeout`, `connect = pending`): a lesson
/// that needs longer is not a lesson.
pub const MAX_WAIT: Duration = Duration::from_secs(600);

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Token {
    Word(String),
    Bytes(Vec<u8>),
    Equals,
    Colon,
    Star,
    Plus,
}

pub(crate) fn describe_token(token: Option<&Token>) -> String {
    match token {
        None => "the end of the line".into(),
        Some(Token::Word(word)) => format!("`{word}`"),
        Some(Token::Bytes(bytes)) => format!("the string \"{}\"", quote(bytes)),
        Some(Token::Equals) => "`=`".into(),
        Some(Token::Colon) => "`:`".into(),
        Some(Token::Star) => "`*`".into(),
        Some(Token::Plus) => "`+`".into(),
    }
}

/// The tokens of one line and how far the parser has read, plus the bytes the whole file has
/// built so far (so the cap on payloads holds per file, not per expression).
pub(crate) struct Tokens<'a> {
    tokens: Vec<Token>,
    position: usize,
    built: &'a mut usize,
}

impl<'a> Tokens<'a> {
    pub(crate) fn new(line: &str, built: &'a mut usize) -> Result<Tokens<'a>, String> {
        Ok(Tokens {
            tokens: tokenize(line)?,
            position: 0,
            built,
        })
    }

    pub(crate) fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.position)
    }

    pub(crate) fn peek_word(&self) -> Option<&str> {
        match self.peek() {
            Some(Token::Word(word)) => Some(word),
            _ => None,
        }
    }

    /// `server tcp` is a directive; `server: log ...` is a step.
    pub(crate) fn peek_is_directive(&self) -> bool {
        self.tokens.get(self.position + 1) != Some(&Token::Colon)
    }

    pub(crate) fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.position).cloned();
        self.position += 1;
        token
    }

    pub(crate) fn at_end(&self) -> bool {
        self.position >= self.tokens.len()
    }

    pub(crate) fn eat(&mut self, token: &Token) -> bool {
        let matched = self.peek() == Some(token);
        if matched {
            self.position += 1;
        }
        matched
    }

    pub(crate) fn expect(&mut self, token: &Token, what: &str) -> Result<(), String> {
        if self.eat(token) {
            Ok(())
        } else {
            Err(format!(
                "expected {what}, found {}",
                describe_token(self.peek())
            ))
        }
    }

    pub(crate) fn end(&self) -> Result<(), String> {
        match self.peek() {
            None => Ok(()),
            token => Err(format!(
                "the step is over, but {} follows it",
                describe_token(token)
            )),
        }
    }

    pub(crate) fn word(&mut self, what: &str) -> Result<String, String> {
        match self.peek() {
            Some(Token::Word(word)) => {
                let word = word.clone();
                self.position += 1;
                Ok(word)
            }
            token => Err(format!("expected {what}, found {}", describe_token(token))),
        }
    }

    pub(crate) fn text(&mut self, what: &str) -> Result<String, String> {
        let bytes = self.bytes_expr().map_err(|e| format!("{what}: {e}"))?;
        String::from_utf8(bytes).map_err(|_| {
            format!("{what} must be UTF-8 text; write r\"\\xff\" to match an escaped byte")
        })
    }

    /// A whole number no larger than `max` (`1_000` may be written with underscores).
    pub(crate) fn number(&mut self, max: usize) -> Result<usize, String> {
        let word = self.word("a number")?;
        let digits = word.replace('_', "");
        let number: usize = digits
            .parse()
            .map_err(|_| format!("expected a number, found `{word}`"))?;
        if number > max {
            return Err(format!("{word} is too large here: at most {max}"));
        }
        Ok(number)
    }

    pub(crate) fn duration(&mut self) -> Result<Duration, String> {
        parse_duration(&self.word("a duration such as 5s or 300ms")?)
    }

    /// `"abc"`, `"x" * 4096`, `"GET / HTTP/1.1\r\n" + "Host: a\r\n" * 2`.
    pub(crate) fn bytes_expr(&mut self) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        loop {
            let piece = match self.next() {
                Some(Token::Bytes(bytes)) => bytes,
                token => {
                    return Err(format!(
                        "expected a string such as \"hello\\r\\n\", found {}",
                        describe_token(token.as_ref())
                    ));
                }
            };
            let times = if self.eat(&Token::Star) {
                self.number(MAX_PAYLOAD)?
            } else {
                1
            };
            let size = piece.len().saturating_mul(times);
            if size.saturating_add(*self.built) > MAX_PAYLOAD {
                return Err(format!(
                    "the file's byte strings add up to more than {MAX_PAYLOAD} bytes, the most one scenario may build"
                ));
            }
            *self.built += size;
            for _ in 0..times {
                out.extend_from_slice(&piece);
            }
            if !self.eat(&Token::Plus) {
                return Ok(out);
            }
        }
    }
}

/// `300ms` or `5s`, at most [`MAX_WAIT`].
pub(crate) fn parse_duration(word: &str) -> Result<Duration, String> {
    let split = word
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(word.len());
    let (number, unit) = word.split_at(split);
    let not_a_duration = || format!("`{word}` is not a duration such as 5s or 300ms");
    let number: u64 = number.parse().map_err(|_| not_a_duration())?;
    let duration = match unit {
        "ms" => Duration::from_millis(number),
        "s" => Duration::from_secs(number),
        _ => return Err(not_a_duration()),
    };
    if duration > MAX_WAIT {
        return Err(format!(
            "`{word}` is longer than any wait a scenario may have ({}s)",
            MAX_WAIT.as_secs()
        ));
    }
    Ok(duration)
}

fn tokenize(line: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut chars = line.char_indices().peekable();
    while let Some(&(start, c)) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '#' => break, // a trailing comment
            '=' | ':' | '*' | '+' => {
                chars.next();
                tokens.push(match c {
                    '=' => Token::Equals,
                    ':' => Token::Colon,
                    '*' => Token::Star,
                    _ => Token::Plus,
                });
            }
            '"' => {
                chars.next();
                tokens.push(Token::Bytes(string_literal(&mut chars, false)?));
            }
            'r' if line[start..].starts_with("r\"") => {
                chars.next();
                chars.next();
                tokens.push(Token::Bytes(string_literal(&mut chars, true)?));
            }
            _ => {
                let mut end = start;
                while let Some(&(i, c)) = chars.peek() {
                    if c.is_whitespace() || matches!(c, '"' | '=' | ':' | '*' | '+' | '#') {
                        break;
                    }
                    end = i + c.len_utf8();
                    chars.next();
                }
                tokens.push(Token::Word(line[start..end].to_string()));
            }
        }
    }
    Ok(tokens)
}

fn string_literal(
    chars: &mut std::iter::Peekable<std::str::CharIndices>,
    raw: bool,
) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let Some((_, c)) = chars.next() else {
            return Err("a string is missing its closing `\"`".into());
        };
        match c {
            '"' => return Ok(out),
            '\\' if !raw => {
                let Some((_, escape)) = chars.next() else {
                    return Err("a string ends in a lone `\\`".into());
                };
                match escape {
                    'n' => out.push(b'\n'),
                    'r' => out.push(b'\r'),
                    't' => out.push(b'\t'),
                    '0' => out.push(0),
                    '\\' => out.push(b'\\'),
                    '"' => out.push(b'"'),
                    'x' => {
                        let hex: String = (0..2)
                            .filter_map(|_| chars.next().map(|(_, c)| c))
                            .collect();
                        let byte = u8::from_str_radix(&hex, 16).map_err(|_| {
                            format!("`\\x{hex}` is not a byte: write two hex digits, as in \\xff")
                        })?;
                        out.push(byte);
                    }
                    'u' => {
                        if chars.next().map(|(_, c)| c) != Some('{') {
                            return Err("write a code point as \\u{85}".into());
                        }
                        let mut hex = String::new();
                        loop {
                            match chars.next() {
                                Some((_, '}')) => break,
                                Some((_, c)) if hex.len() < 6 => hex.push(c),
                                _ => return Err("write a code point as \\u{85}".into()),
                            }
                        }
                        let c = u32::from_str_radix(&hex, 16)
                            .ok()
                            .and_then(char::from_u32)
                            .ok_or_else(|| format!("`\\u{{{hex}}}` is not a character"))?;
                        out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                    }
                    other => {
                        return Err(format!(
                            "unknown escape `\\{other}`; use \\n \\r \\t \\0 \\\\ \\\" \\xNN or \\u{{N}}"
                        ));
                    }
                }
            }
            c => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
        }
    }
}

/// `bytes` as the inside of a scenario string literal: what [`escape`] shows, with `"`
/// escaped too, so parsing it back gives the same bytes.
pub fn quote(bytes: &[u8]) -> String {
    escape(bytes).replace('"', "\\\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(line: &str) -> Result<Vec<Token>, String> {
        tokenize(line)
    }

    fn word(text: &str) -> Token {
        Token::Word(text.into())
    }

    #[test]
    fn a_line_is_words_punctuation_and_strings_up_to_a_comment() {
        assert_eq!(
            tokens("alice: recv 1024 = \"hi\" * 2 + r\"\\x\"  # said twice"),
            Ok(vec![
                word("alice"),
                Token::Colon,
                word("recv"),
                word("1024"),
                Token::Equals,
                Token::Bytes(b"hi".to_vec()),
                Token::Star,
                word("2"),
                Token::Plus,
                Token::Bytes(b"\\x".to_vec()),
            ])
        );
        // Punctuation ends a word without a space; `r` starts a raw string only before `"`.
        assert_eq!(
            tokens("recv=rx:\"a\"#"),
            Ok(vec![
                word("recv"),
                Token::Equals,
                word("rx"),
                Token::Colon,
                Token::Bytes(b"a".to_vec()),
            ])
        );
        assert_eq!(tokens("  # only a comment"), Ok(vec![]));
        assert_eq!(
            tokens("héllo wörld"),
            Ok(vec![word("héllo"), word("wörld")])
        );
    }

    #[test]
    fn every_escape_gives_its_bytes() {
        assert_eq!(
            tokens(r#""\n\r\t\0\\\"\xff\x00\u{85}\u{1F600}é#""#),
            Ok(vec![Token::Bytes(
                [&b"\n\r\t\0\\\"\xff\x00"[..], "\u{85}\u{1F600}é#".as_bytes()].concat()
            )])
        );
        assert_eq!(tokens(r#"r"\n""#), Ok(vec![Token::Bytes(b"\\n".to_vec())]));
    }

    #[test]
    fn a_broken_string_says_what_is_wrong() {
        let error = |line: &str| tokens(line).expect_err(line);
        assert_eq!(error("\"open"), "a string is missing its closing `\"`");
        assert_eq!(error("r\"open"), "a string is missing its closing `\"`");
        assert_eq!(error("\"ends \\"), "a string ends in a lone `\\`");
        assert_eq!(
            error(r#""\xg0""#),
            "`\\xg0` is not a byte: write two hex digits, as in \\xff"
        );
        assert_eq!(
            error(r#""\x1""#),
            "`\\x1\"` is not a byte: write two hex digits, as in \\xff"
        );
        assert_eq!(error(r#""\u85""#), "write a code point as \\u{85}");
        assert_eq!(error(r#""\u{1234567}""#), "write a code point as \\u{85}");
        assert_eq!(error(r#""\u{85"#), "write a code point as \\u{85}");
        assert_eq!(error(r#""\u{d800}""#), "`\\u{d800}` is not a character");
        assert_eq!(
            error(r#""\q""#),
            "unknown escape `\\q`; use \\n \\r \\t \\0 \\\\ \\\" \\xNN or \\u{N}"
        );
    }

    #[test]
    fn numbers_are_whole_and_within_their_limit() {
        let mut built = 0;
        let mut line = Tokens::new("1_000 1001 ten", &mut built).unwrap();
        assert_eq!(line.number(1000), Ok(1000));
        assert_eq!(
            line.number(1000),
            Err("1001 is too large here: at most 1000".into())
        );
        assert_eq!(
            line.number(1000),
            Err("expected a number, found `ten`".into())
        );
        assert_eq!(
            line.number(1000),
            Err("expected a number, found the end of the line".into())
        );
    }

    #[test]
    fn durations_are_milliseconds_or_seconds_up_to_the_longest_wait() {
        assert_eq!(parse_duration("300ms"), Ok(Duration::from_millis(300)));
        assert_eq!(parse_duration("600s"), Ok(MAX_WAIT));
        assert_eq!(
            parse_duration("601s"),
            Err("`601s` is longer than any wait a scenario may have (600s)".into())
        );
        assert_eq!(
            parse_duration("600001ms"),
            Err("`600001ms` is longer than any wait a scenario may have (600s)".into())
        );
        for word in ["5", "5m", "ms", "1.5s", "-1s", ""] {
            assert_eq!(
                parse_duration(word),
                Err(format!("`{word}` is not a duration such as 5s or 300ms"))
            );
        }
    }

    #[test]
    fn byte_strings_join_and_repeat_within_the_files_limit() {
        let mut built = 0;
        let mut line = Tokens::new(r#""ab" * 3 + "c" + "d" * 0"#, &mut built).unwrap();
        assert_eq!(line.bytes_expr(), Ok(b"abababc".to_vec()));
        assert!(line.at_end());
        assert_eq!(built, 7);
        // The limit is the whole file's: what earlier lines built counts.
        let mut built = MAX_PAYLOAD - 2;
        let mut line = Tokens::new(r#""ab" "abc""#, &mut built).unwrap();
        assert_eq!(line.bytes_expr(), Ok(b"ab".to_vec()));
        assert_eq!(
            line.bytes_expr(),
            Err("the file's byte strings add up to more than 67108864 bytes, the most one scenario may build".into())
        );
        let mut built = 0;
        let mut line = Tokens::new("\"x\" * 67108865", &mut built).unwrap();
        assert_eq!(
            line.bytes_expr(),
            Err("67108865 is too large here: at most 67108864".into())
        );
        let mut built = 0;
        let mut line = Tokens::new("hello", &mut built).unwrap();
        assert_eq!(
            line.bytes_expr(),
            Err("expected a string such as \"hello\\r\\n\", found `hello`".into())
        );
        let mut built = 0;
        let mut line = Tokens::new(r#""\xff""#, &mut built).unwrap();
        assert_eq!(
            line.text("a log pattern"),
            Err(
                "a log pattern must be UTF-8 text; write r\"\\xff\" to match an escaped byte"
                    .into()
            )
        );
    }

    #[test]
    fn the_cursor_reads_expects_and_finds_the_end() {
        let mut built = 0;
        let mut line = Tokens::new("server: log = \"x\" * +", &mut built).unwrap();
        assert!(!line.peek_is_directive());
        assert_eq!(line.peek_word(), Some("server"));
        assert_eq!(line.word("a name"), Ok("server".into()));
        assert!(line.peek_is_directive());
        assert_eq!(line.peek_word(), None);
        assert_eq!(
            line.expect(&Token::Equals, "`=`"),
            Err("expected `=`, found `:`".into())
        );
        assert!(line.eat(&Token::Colon));
        assert_eq!(
            line.end(),
            Err("the step is over, but `log` follows it".into())
        );
        assert_eq!(line.next(), Some(word("log")));
        assert_eq!(line.expect(&Token::Equals, "`=`"), Ok(()));
        assert_eq!(
            line.word("a name"),
            Err("expected a name, found the string \"x\"".into())
        );
        assert_eq!(
            line.end(),
            Err("the step is over, but the string \"x\" follows it".into())
        );
        line.next();
        assert_eq!(
            line.end(),
            Err("the step is over, but `*` follows it".into())
        );
        line.next();
        assert_eq!(
            line.end(),
            Err("the step is over, but `+` follows it".into())
        );
        assert!(!line.at_end());
        line.next();
        assert!(line.at_end());
        assert_eq!(line.end(), Ok(()));
        assert_eq!(line.next(), None);
    }

    #[test]
    fn quoted_bytes_read_back_as_themselves() {
        let bytes = b"say \"hi\"\r\n\x00\xff\\".to_vec();
        let line = format!("\"{}\"", quote(&bytes));
        assert_eq!(tokens(&line), Ok(vec![Token::Bytes(bytes)]));
    }
}
