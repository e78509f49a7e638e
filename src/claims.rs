//! The walkthrough's claims, as `CLAIMS.md` lists them: number, title, and the lessons that
//! demonstrate or correct each. `socket-lab check` reports on claims as well as lessons, so a
//! learner sees "claim 7 does not hold for your server" next to the lesson that showed it.
//!
//! The file is prose for people; this module reads only its two machine-shaped parts: the
//! headings `## Claim N: title` and the links on each claim's `**Lessons:**` line
//! (`[06](scenarios/06-two-clients.txt)`). `tests/claims.rs` keeps the file in that shape.

use std::path::{Path, PathBuf};

/// One claim of the walkthrough.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    pub number: u32,
    pub title: String,
    /// The lesson files (names, such as `06-two-clients.txt`) listed for it.
    pub lessons: Vec<String>,
}

/// Reads the claims from the text of `CLAIMS.md`.
pub fn parse(text: &str) -> Vec<Claim> {
    let mut claims: Vec<Claim> = Vec::new();
    let mut in_lessons = false;
    for line in text.lines() {
        if let Some(heading) = line.strip_prefix("## Claim ") {
            in_lessons = false;
            let Some((number, title)) = heading.split_once(':') else {
                continue;
            };
            if let Ok(number) = number.trim().parse() {
                claims.push(Claim {
                    number,
                    title: title.trim().to_string(),
                    lessons: Vec::new(),
                });
            }
            continue;
        }
        if line.starts_with("**") {
            in_lessons = line.starts_with("**Lessons:**");
        } else if line.trim().is_empty() {
            in_lessons = false;
        }
        if in_lessons && let Some(claim) = claims.last_mut() {
            claim.lessons.extend(lesson_links(line));
        }
    }
    claims
}

/// The file names in `(scenarios/NAME.txt)` links on a line.
fn lesson_links(line: &str) -> Vec<String> {
    line.split("(scenarios/")
        .skip(1)
        .filter_map(|rest| rest.split_once(')'))
        .map(|(name, _)| name.to_string())
        .filter(|name| name.ends_with(".txt"))
        .collect()
}

/// Where `CLAIMS.md` is for the lessons in `lessons_dir`: beside that folder, else in the
/// source tree.
pub fn locate(lessons_dir: &Path) -> PathBuf {
    let beside = lessons_dir
        .parent()
        .map(|parent| parent.join("CLAIMS.md"))
        .filter(|path| path.is_file());
    beside.unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("CLAIMS.md"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headings_and_lesson_links_are_read() {
        let text = "# Claims\n\n## Claim 7: accept waits\n\n**Claim:** it waits.\n\n**Lessons:** [01](scenarios/01-one-message.txt),\n[06](scenarios/06-two-clients.txt)\n\n**Tests:** `tests/x.rs`\n\n## Claim 8: send returns a count\n\n**Lessons:** [19](scenarios/19-partial-send.txt)\n";
        let claims = parse(text);
        assert_eq!(claims.len(), 2);
        assert_eq!(claims[0].number, 7);
        assert_eq!(claims[0].title, "accept waits");
        assert_eq!(
            claims[0].lessons,
            ["01-one-message.txt", "06-two-clients.txt"]
        );
        assert_eq!(claims[1].lessons, ["19-partial-send.txt"]);
    }

    #[test]
    fn the_repository_claims_file_has_seventeen_claims_each_with_lessons() {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/CLAIMS.md"))
            .expect("CLAIMS.md");
        let claims = parse(&text);
        assert_eq!(
            claims.iter().map(|claim| claim.number).collect::<Vec<_>>(),
            (1..=17).collect::<Vec<_>>()
        );
        assert!(claims.iter().all(|claim| !claim.lessons.is_empty()));
    }
}
