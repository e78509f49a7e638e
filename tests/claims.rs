//! `CLAIMS.md` is the list of the walkthrough's claims that the lessons cite ("Claim 4:",
//! "Claims 9 and 10", "Claims 3, 7, 8, 9"). These tests keep the list and the lessons in step:
//!
//! - every claim a lesson's narration cites has a `## Claim N:` section;
//! - every section lists, on its `**Lessons:**` paragraph, lesson files that exist, and among
//!   them every lesson that cites it;
//! - the sections are claims 1 to 17, in order, each with its place in the walkthrough, the
//!   claim in English and in Chinese, and a verdict;
//! - every test named on a `**Tests:**` paragraph exists.
//!
//! A labelled paragraph (`**Lessons:**`, `**Tests:**`, `**Verdict:**` ...) runs from the line
//! that starts with its label to the next empty line, so a long list may wrap.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

/// How many claims the walkthrough makes.
const CLAIMS: u32 = 17;

/// The three verdicts a claim can get.
const VERDICTS: [&str; 3] = ["holds", "holds, with a caveat", "corrected"];

const WHERE: &str = "**Where:**";
const ENGLISH: &str = "**Claim:**";
const CHINESE: &str = "**中文：**";
const VERDICT: &str = "**Verdict:**";
const LESSONS: &str = "**Lessons:**";
const TESTS: &str = "**Tests:**";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(relative: &str) -> String {
    let path = root().join(relative);
    fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()))
}

/// One `## Claim N: title` section of CLAIMS.md.
struct Section {
    number: u32,
    title: String,
    /// The lines after the heading, up to the next heading.
    body: Vec<String>,
}

impl Section {
    /// The paragraph that starts with `label`, joined into one line, or `None`.
    fn paragraph(&self, label: &str) -> Option<String> {
        let start = self.body.iter().position(|line| line.starts_with(label))?;
        let lines: Vec<&str> = self.body[start..]
            .iter()
            .map(|line| line.trim())
            .take_while(|line| !line.is_empty())
            .collect();
        Some(lines.join(" "))
    }

    /// Like [`Section::paragraph`], but a missing paragraph fails the test, naming the claim.
    fn require(&self, label: &str) -> String {
        self.paragraph(label).unwrap_or_else(|| {
            panic!(
                "CLAIMS.md: claim {} has no paragraph starting with {label}",
                self.number
            )
        })
    }
}

/// The `## Claim N: title` sections of `text`, in file order. A heading that starts
/// `## Claim` but is not `## Claim N: title` fails the test.
fn sections(text: &str) -> Vec<Section> {
    let mut sections = Vec::new();
    let mut current: Option<Section> = None;
    for (index, line) in text.lines().enumerate() {
        if line.starts_with("# ") || line.starts_with("## ") {
            sections.extend(current.take());
            if let Some(rest) = line.strip_prefix("## Claim") {
                let parsed = rest.strip_prefix(' ').and_then(|rest| {
                    let (number, title) = rest.split_once(": ")?;
                    Some((number.parse::<u32>().ok()?, title.trim()))
                });
                let Some((number, title)) = parsed else {
                    panic!(
                        "CLAIMS.md line {}: expected `## Claim N: title`, found {line:?}",
                        index + 1
                    );
                };
                current = Some(Section {
                    number,
                    title: title.to_string(),
                    body: Vec::new(),
                });
            }
        } else if let Some(section) = current.as_mut() {
            section.body.push(line.to_string());
        }
    }
    sections.extend(current);
    sections
}

fn claims_md() -> Vec<Section> {
    sections(&read("CLAIMS.md"))
}

/// Every lesson file, as `scenarios/NAME.txt`, sorted.
fn lesson_files() -> Vec<String> {
    let dir = root().join("scenarios");
    let mut files: Vec<String> = fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("cannot list {}: {error}", dir.display()))
        .map(|entry| entry.expect("a directory entry").file_name())
        .map(|name| name.to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".txt"))
        .map(|name| format!("scenarios/{name}"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no lessons in {}", dir.display());
    files
}

/// A lesson's narration: the text of its `#` lines, joined with spaces so that a citation
/// wrapped over two lines still reads as one.
fn narration(lesson: &str) -> String {
    read(lesson)
        .lines()
        .map(str::trim_start)
        .filter(|line| line.starts_with('#'))
        .map(|line| line.trim_start_matches('#').trim())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The claim numbers `text` cites: `claim N`, `claims N and M`, `claims N, M, K`,
/// `claims N, M and K` (any case). "claim" must be a word of its own, followed by a number.
fn cited_claims(text: &str) -> BTreeSet<u32> {
    let lower = text.to_ascii_lowercase();
    let bytes = lower.as_bytes();
    let mut cited = BTreeSet::new();
    let mut from = 0;
    while let Some(found) = lower[from..].find("claim") {
        let start = from + found;
        from = start + "claim".len();
        if start > 0 && bytes[start - 1].is_ascii_alphanumeric() {
            continue; // "reclaim"
        }
        let mut at = from;
        if bytes.get(at) == Some(&b's') {
            at += 1;
        }
        let spaces = skip_spaces(bytes, at);
        if spaces == at {
            continue; // "claimed", "claims:"
        }
        let Some((first, mut at)) = number(bytes, spaces) else {
            continue; // "the claims below"
        };
        cited.insert(first);
        // Further numbers, each after a comma, an "and", or a comma and an "and".
        loop {
            let mut next = skip_spaces(bytes, at);
            let comma = bytes.get(next) == Some(&b',');
            if comma {
                next = skip_spaces(bytes, next + 1);
            }
            let and = lower[next..].starts_with("and")
                && bytes.get(next + 3).is_some_and(u8::is_ascii_whitespace);
            if and {
                next = skip_spaces(bytes, next + 3);
            }
            if !comma && !and {
                break;
            }
            let Some((claim, end)) = number(bytes, next) else {
                break;
            };
            cited.insert(claim);
            at = end;
        }
    }
    cited
}

fn skip_spaces(bytes: &[u8], mut at: usize) -> usize {
    while bytes.get(at).is_some_and(u8::is_ascii_whitespace) {
        at += 1;
    }
    at
}

/// The decimal number at `at`, and where it ends.
fn number(bytes: &[u8], at: usize) -> Option<(u32, usize)> {
    let end = at
        + bytes[at.min(bytes.len())..]
            .iter()
            .take_while(|byte| byte.is_ascii_digit())
            .count();
    let digits = std::str::from_utf8(&bytes[at.min(end)..end]).ok()?;
    Some((digits.parse().ok()?, end))
}

/// Every lesson, with the claims its narration cites.
fn citations() -> BTreeMap<String, BTreeSet<u32>> {
    lesson_files()
        .into_iter()
        .map(|lesson| {
            let cited = cited_claims(&narration(&lesson));
            (lesson, cited)
        })
        .collect()
}

/// The markdown links `[text](target)` in `text`.
fn links(text: &str) -> Vec<(String, String)> {
    let mut links = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        rest = &rest[open + 1..];
        let Some((label, after)) = rest.split_once("](") else {
            break;
        };
        let Some((target, after)) = after.split_once(')') else {
            break;
        };
        links.push((label.to_string(), target.to_string()));
        rest = after;
    }
    links
}

/// The spans of `text` written in backticks.
fn backticked(text: &str) -> Vec<String> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// Whether `text` has a character in U+4E00..U+9FFF (CJK unified ideographs).
fn has_cjk(text: &str) -> bool {
    text.chars().any(|c| ('\u{4E00}'..='\u{9FFF}').contains(&c))
}

#[test]
fn citation_parser_reads_every_form() {
    let cases: [(&str, &[u32]); 10] = [
        ("Claim 4: bind raises an error", &[4]),
        ("Claims 9 and 10: if more data", &[9, 10]),
        ("Claims 3, 7, 8, 9: the client", &[3, 7, 8, 9]),
        ("claims 5, 6 and 7 say", &[5, 6, 7]),
        ("claims 5, 6, and 7.", &[5, 6, 7]),
        ("(claim 14). claim 17's dynamic HTML", &[14, 17]),
        ("CLAIMS 11\n and 13", &[11, 13]),
        ("claim 10, lesson 03 and 2 more", &[10]),
        ("the walkthrough claims 2 things; reclaim 3", &[2]),
        ("what it claims, claimed 5 times; no claim here", &[]),
    ];
    for (text, expected) in cases {
        let expected: BTreeSet<u32> = expected.iter().copied().collect();
        assert_eq!(cited_claims(text), expected, "citations in {text:?}");
    }
}

#[test]
fn every_claim_cited_by_a_lesson_is_in_claims_md() {
    let numbers: BTreeSet<u32> = claims_md().iter().map(|section| section.number).collect();
    let mut missing = Vec::new();
    for (lesson, cited) in citations() {
        for claim in cited.difference(&numbers) {
            missing.push(format!(
                "{lesson} cites claim {claim}, but CLAIMS.md has no `## Claim {claim}:` section"
            ));
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

#[test]
fn every_claim_has_a_lesson() {
    let citations = citations();
    let mut problems = Vec::new();
    for section in claims_md() {
        let claim = section.number;
        let listed: Vec<(String, String)> = links(&section.require(LESSONS));
        if listed.is_empty() {
            problems.push(format!(
                "claim {claim}: its {LESSONS} paragraph lists no lesson"
            ));
        }
        for (label, target) in &listed {
            let file_name = target.strip_prefix("scenarios/").unwrap_or("");
            if !file_name.ends_with(".txt") || !root().join(target).is_file() {
                problems.push(format!(
                    "claim {claim}: lists [{label}]({target}), which is not a lesson file in scenarios/"
                ));
            } else if !file_name.starts_with(&format!("{label}-")) {
                problems.push(format!(
                    "claim {claim}: the link [{label}]({target}) should be labelled with the lesson's number"
                ));
            }
        }
        let targets: BTreeSet<&str> = listed.iter().map(|(_, target)| target.as_str()).collect();
        for (lesson, cited) in &citations {
            if cited.contains(&claim) && !targets.contains(lesson.as_str()) {
                problems.push(format!(
                    "claim {claim}: {lesson} cites it in its narration but is not on its {LESSONS} line"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn claims_are_numbered_1_to_17_in_order() {
    let numbers: Vec<u32> = claims_md().iter().map(|section| section.number).collect();
    let expected: Vec<u32> = (1..=CLAIMS).collect();
    assert_eq!(
        numbers, expected,
        "CLAIMS.md must have the sections `## Claim 1:` to `## Claim {CLAIMS}:`, once each, in order"
    );
}

#[test]
fn each_claim_is_written_in_english_and_chinese_with_a_verdict() {
    let mut problems = Vec::new();
    for section in claims_md() {
        let claim = section.number;
        if section.title.is_empty() || has_cjk(&section.title) {
            problems.push(format!(
                "claim {claim}: the heading needs a short English title"
            ));
        }
        if !has_cjk(&section.require(WHERE)) {
            problems.push(format!(
                "claim {claim}: {WHERE} should quote the walkthrough's own Chinese words"
            ));
        }
        let english = section.require(ENGLISH);
        let english_text = english.trim_start_matches(ENGLISH).trim();
        if has_cjk(english_text) || !english_text.chars().any(|c| c.is_ascii_alphabetic()) {
            problems.push(format!(
                "claim {claim}: {ENGLISH} should state the claim in English"
            ));
        }
        let chinese = section.require(CHINESE);
        if !has_cjk(chinese.trim_start_matches(CHINESE)) {
            problems.push(format!(
                "claim {claim}: {CHINESE} should state the claim in Chinese"
            ));
        }
        let verdict = section.require(VERDICT);
        let verdict_text = verdict.trim_start_matches(VERDICT).trim();
        let (word, explanation) = verdict_text.split_once('.').unwrap_or((verdict_text, ""));
        if !VERDICTS.contains(&word) {
            problems.push(format!(
                "claim {claim}: the verdict {word:?} is not one of {VERDICTS:?} followed by a full stop"
            ));
        }
        if !explanation.chars().any(|c| c.is_ascii_alphabetic()) || !has_cjk(explanation) {
            problems.push(format!(
                "claim {claim}: the verdict should say what Linux does in English and in Chinese"
            ));
        }
        section.require(TESTS);
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Whether `source` defines a function `name`: `fn name(`, or a test made by a macro whose
/// first argument is the name (`req!(name, ...)` in `tests/http_parser.rs`).
fn defines(source: &str, name: &str) -> bool {
    if source.contains(&format!("fn {name}(")) || source.contains(&format!("fn {name}<")) {
        return true;
    }
    source.match_indices(name).any(|(at, _)| {
        let before = source[..at].trim_end();
        let after = source[at + name.len()..].trim_start();
        before.ends_with("!(") && after.starts_with(',')
    })
}

#[test]
fn tests_named_in_claims_md_exist() {
    let mut problems = Vec::new();
    for section in claims_md() {
        let claim = section.number;
        let named = backticked(&section.require(TESTS));
        if named.is_empty() {
            problems.push(format!(
                "claim {claim}: its {TESTS} paragraph names no test"
            ));
        }
        for test in named {
            let (file, name) = match test.split_once("::") {
                Some((file, name)) => (file.trim(), Some(name.trim())),
                None => match test.split_once(char::is_whitespace) {
                    Some((file, name)) => (file, Some(name.trim())),
                    None => (test.as_str(), None),
                },
            };
            if !file.starts_with("tests/") || !file.ends_with(".rs") {
                problems.push(format!(
                    "claim {claim}: `{test}` is not `tests/FILE.rs` or `tests/FILE.rs::name`"
                ));
                continue;
            }
            let path = root().join(file);
            let Ok(source) = fs::read_to_string(&path) else {
                problems.push(format!("claim {claim}: `{test}`: there is no {file}"));
                continue;
            };
            if let Some(name) = name
                && !defines(&source, name)
            {
                problems.push(format!(
                    "claim {claim}: `{test}`: {file} has no `fn {name}`"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
