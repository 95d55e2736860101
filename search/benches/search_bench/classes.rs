//! The benchmark's query classes beyond one edit per word, drawn from the catalog's real
//! performer names the way people really mistype them (issue 14): words run together
//! (`join`), a word split apart (`split`), one phonetic rewrite (`phonetic`: ph/f, -ie/-y,
//! c/k, th/t, a doubled or dropped letter), two slips in one word of 5–7 letters with the
//! other words right, at most one letter fewer and exactly two edits from the name
//! (`two-slips`), a slip in a word of three letters or fewer with the other words right
//! (`short`), and a misspelled name whose other word is spelled exactly and also names
//! venues or cities (`venue-word`).
//!
//! Every query aims at one performer; a performer whose name offers no place for the
//! class's slip is skipped, so a class may hold fewer queries than asked for.

use std::collections::HashSet;

use boxoffice_search::suggest::edit_distance;

use crate::{Performer, Rng};

/// The class names, in report and export order.
pub const CLASSES: [&str; 6] = [
    "join",
    "split",
    "phonetic",
    "two-slips",
    "short",
    "venue-word",
];

/// Vowels, `y` included (it is one at the end of "Kelly").
fn is_vowel(c: char) -> bool {
    matches!(c, 'a' | 'e' | 'i' | 'o' | 'u' | 'y')
}

/// A name's words as people type them: lowercase, "&" dropped.
fn typed_words(name: &str) -> Vec<String> {
    name.split_whitespace()
        .filter(|w| w.chars().any(char::is_alphanumeric))
        .map(str::to_lowercase)
        .collect()
}

fn is_plain(word: &str) -> bool {
    word.chars().all(|c| c.is_ascii_lowercase())
}

/// Every phonetic rewrite of `word` this generator knows, each one slip as a person makes
/// it (one or two edits): ph↔f, -y↔-ie, c↔k, th→t, a doubled letter single, a single
/// consonant doubled, an interior vowel dropped or doubled.
fn phonetic_rewrites(word: &str) -> Vec<String> {
    let mut out = Vec::new();
    if !is_plain(word) || word.len() < 3 {
        return out;
    }
    let chars: Vec<char> = word.chars().collect();
    let n = chars.len();
    let mut push = |s: String| {
        if s != word && !out.contains(&s) {
            out.push(s);
        }
    };
    if let Some(i) = word.find("ph") {
        push(format!("{}f{}", &word[..i], &word[i + 2..]));
    }
    if let Some(i) = word[1..].find('f').map(|i| i + 1) {
        push(format!("{}ph{}", &word[..i], &word[i + 1..]));
    }
    if let Some(stem) = word.strip_suffix("ie") {
        push(format!("{stem}y"));
    } else if let Some(stem) = word.strip_suffix("ey") {
        push(format!("{stem}ie"));
    } else if let Some(stem) = word.strip_suffix('y') {
        push(format!("{stem}ie"));
    }
    if let Some(rest) = word.strip_prefix('c') {
        if rest.starts_with(['a', 'o', 'u', 'l', 'r']) {
            push(format!("k{rest}"));
        }
    } else if let Some(rest) = word.strip_prefix('k') {
        if rest.starts_with(['a', 'o', 'u', 'l', 'r']) {
            push(format!("c{rest}"));
        }
    }
    if let Some(stem) = word.strip_suffix('k') {
        push(format!("{stem}c"));
    } else if let Some(stem) = word.strip_suffix('c') {
        push(format!("{stem}k"));
    }
    if let Some(i) = word.find("th") {
        push(format!("{}t{}", &word[..i], &word[i + 2..]));
    }
    for i in 1..n {
        if chars[i] == chars[i - 1] {
            let mut c = chars.clone();
            c.remove(i);
            push(c.into_iter().collect());
        }
    }
    for i in 1..n.saturating_sub(1) {
        let (prev, c, next) = (chars[i - 1], chars[i], chars[i + 1]);
        if !is_vowel(c) && is_vowel(prev) && is_vowel(next) {
            let mut d = chars.clone();
            d.insert(i, c);
            push(d.into_iter().collect());
        }
        if is_vowel(c) && !is_vowel(prev) && !is_vowel(next) {
            let mut d = chars.clone();
            d.remove(i);
            push(d.iter().collect());
            d.insert(i, c);
            d.insert(i, c);
            push(d.into_iter().collect());
        }
    }
    out
}

/// One slip anywhere but the first letter: drop, swap with the next, or replace.
fn one_edit(rng: &mut Rng, word: &str) -> String {
    let mut c: Vec<char> = word.chars().collect();
    let n = c.len();
    if n < 3 {
        return word.to_owned();
    }
    let pos = 1 + rng.below(n - 2);
    match rng.below(3) {
        0 => {
            c.remove(pos);
        }
        1 => c.swap(pos, pos + 1),
        _ => {
            let r = (b'a' + rng.below(26) as u8) as char;
            c[pos] = if r == c[pos] { 'x' } else { r };
        }
    }
    c.into_iter().collect()
}

/// Draws of two slips tried before a name is skipped.
const TWO_SLIPS_ATTEMPTS: usize = 20;

/// Two slips in `word`, one after the other: each a phonetic rewrite (70 %) or a drop,
/// swap or replacement, at most one letter fewer in all (two drops make a skeleton, "dvd"
/// for "david", not two slips).
fn two_slips(rng: &mut Rng, word: &str) -> String {
    let n_letters = word.chars().count();
    let mut word = word.to_owned();
    for _ in 0..2 {
        let rewrites: Vec<String> = phonetic_rewrites(&word)
            .into_iter()
            .filter(|r| r.chars().count() + 1 >= n_letters)
            .collect();
        word = if !rewrites.is_empty() && rng.chance(70) {
            rng.pick(&rewrites).clone()
        } else {
            let edited = one_edit(rng, &word);
            if edited.chars().count() + 1 >= n_letters {
                edited
            } else {
                // A drop would be the second: swap instead.
                let mut c: Vec<char> = word.chars().collect();
                let pos = 1 + rng.below(c.len().saturating_sub(2).max(1));
                if pos + 1 < c.len() {
                    c.swap(pos, pos + 1);
                }
                c.into_iter().collect()
            }
        };
    }
    word
}

/// A slip in a word of three letters or fewer: a vowel dropped, swapped with its
/// neighbour, or replaced by another vowel.
fn short_slips(word: &str) -> Vec<String> {
    let chars: Vec<char> = word.chars().collect();
    let mut out = Vec::new();
    if !is_plain(word) || chars.len() < 2 {
        return out;
    }
    let mut push = |s: String| {
        if s != word && s.len() >= 2 && !out.contains(&s) {
            out.push(s);
        }
    };
    for (i, &c) in chars.iter().enumerate() {
        if !is_vowel(c) {
            continue;
        }
        if i > 0 {
            let mut d = chars.clone();
            d.remove(i);
            push(d.into_iter().collect());
        }
        if i + 1 < chars.len() {
            let mut d = chars.clone();
            d.swap(i, i + 1);
            push(d.into_iter().collect());
        }
        for v in ['a', 'e', 'i', 'o', 'u', 'y'] {
            if v != c {
                let mut d = chars.clone();
                d[i] = v;
                push(d.into_iter().collect());
            }
        }
    }
    out
}

/// Words that name venues or cities somewhere in the catalog.
pub struct PlaceWords(HashSet<String>);

impl PlaceWords {
    pub fn new(last_names: &[&str], cities: &[(&str, &str)]) -> Self {
        let mut words = HashSet::new();
        for name in last_names {
            words.insert(name.to_lowercase());
        }
        for (city, _) in cities {
            for w in city.split_whitespace() {
                words.insert(w.to_lowercase());
            }
        }
        PlaceWords(words)
    }
}

/// The query of class `class` for `name`, or `None` when the name offers no place for it.
/// `vocabulary` holds the catalog's name words (a slip landing on one is the hard case of
/// `venue-word`), `names` every performer name lowercased (a query that is another
/// performer's exact name is not a misspelling of this one).
fn make(
    rng: &mut Rng,
    class: &str,
    name: &str,
    places: &PlaceWords,
    vocabulary: &HashSet<String>,
    names: &HashSet<String>,
) -> Option<String> {
    let words = typed_words(name);
    let n = words.len();
    let with = |i: usize, replacement: &str| {
        let mut w = words.clone();
        w[i] = replacement.to_owned();
        w.join(" ")
    };
    let q = match class {
        "join" => {
            if n < 2 {
                return None;
            }
            if n >= 3 && rng.chance(25) {
                words.concat()
            } else {
                let i = rng.below(n - 1);
                let mut w = words.clone();
                let next = w.remove(i + 1);
                w[i].push_str(&next);
                w.join(" ")
            }
        }
        "split" => {
            let (i, word) = words
                .iter()
                .enumerate()
                .filter(|(_, w)| w.chars().count() >= 6 && is_plain(w))
                .max_by_key(|(_, w)| w.len())?;
            let at = 3 + rng.below(word.len() - 5);
            with(i, &format!("{} {}", &word[..at], &word[at..]))
        }
        "phonetic" => {
            let options: Vec<(usize, String)> = words
                .iter()
                .enumerate()
                .flat_map(|(i, w)| phonetic_rewrites(w).into_iter().map(move |r| (i, r)))
                .collect();
            if options.is_empty() {
                return None;
            }
            let (i, r) = rng.pick(&options).clone();
            with(i, &r)
        }
        "two-slips" => {
            let candidates: Vec<usize> = (0..n)
                .filter(|&i| (5..=7).contains(&words[i].len()) && is_plain(&words[i]))
                .collect();
            if candidates.is_empty() {
                return None;
            }
            let i = *rng.pick(&candidates);
            // Two slips must leave the word two edits from the name, counted as the index
            // counts them (optimal string alignment): a phonetic rewrite of two edits plus
            // another slip, or a swap across a dropped letter ("dougsl" for "douglas"), is
            // three. Redrawn until it is two.
            let name: Vec<char> = words[i].chars().collect();
            let slipped = (0..TWO_SLIPS_ATTEMPTS).find_map(|_| {
                let slipped = two_slips(rng, &words[i]);
                let typed: Vec<char> = slipped.chars().collect();
                (edit_distance(&typed, &name, false) == 2).then_some(slipped)
            })?;
            with(i, &slipped)
        }
        "short" => {
            let options: Vec<(usize, String)> = words
                .iter()
                .enumerate()
                .filter(|(_, w)| w.chars().count() <= 3)
                .flat_map(|(i, w)| short_slips(w).into_iter().map(move |r| (i, r)))
                .collect();
            if options.is_empty() {
                return None;
            }
            let (i, r) = rng.pick(&options).clone();
            with(i, &r)
        }
        "venue-word" => {
            let anchor = words
                .iter()
                .position(|w| w.len() >= 4 && places.0.contains(w))?;
            let others: Vec<usize> = (0..n)
                .filter(|&i| i != anchor && words[i].len() >= 4 && is_plain(&words[i]))
                .collect();
            if others.is_empty() {
                return None;
            }
            let i = *rng.pick(&others);
            // The hard case first: a slip that lands on another real name word.
            let landing: Vec<String> = (0..40)
                .map(|_| one_edit(rng, &words[i]))
                .filter(|w| w != &words[i] && vocabulary.contains(w))
                .collect();
            let slip = match landing.first() {
                Some(w) => w.clone(),
                None => one_edit(rng, &words[i]),
            };
            with(i, &slip)
        }
        _ => return None,
    };
    let folded = q.to_lowercase();
    (folded != words.join(" ") && !names.contains(&folded)).then_some(q)
}

/// Up to `n_per_class` queries of each class, drawn from `targets` in order (each class
/// from its own generator seeded by `seed`).
pub fn class_sets<'a>(
    seed: u64,
    n_per_class: usize,
    targets: &[&'a Performer],
    all: &[Performer],
    places: &PlaceWords,
    vocabulary: &HashSet<String>,
) -> Vec<(&'static str, Vec<(String, &'a str)>)> {
    let names: HashSet<String> = all.iter().map(|p| typed_words(&p.name).join(" ")).collect();
    CLASSES
        .iter()
        .enumerate()
        .map(|(k, class)| {
            let mut rng = Rng::new(seed ^ 0xc1a55 ^ ((k as u64 + 1) << 32));
            let set = targets
                .iter()
                .filter_map(|p| {
                    make(&mut rng, class, &p.name, places, vocabulary, &names)
                        .map(|q| (q, p.id.as_str()))
                })
                .take(n_per_class)
                .collect();
            (*class, set)
        })
        .collect()
}
