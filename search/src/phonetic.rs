//! The sound key of a word: one spelling for the ways a name sounds the same but is spelled
//! differently ("Stephen" / "Stefen", "Kelly" / "Kellie", "Murphy" / "Murfie",
//! "Catherine" / "Katherine", "Sarah" / "Sara", "Thomas" / "Tomas"). Performer words are
//! indexed under their keys, and a query word's key is looked up there: a phonetic slip of
//! two or three edits then costs one term lookup instead of a wide typo automaton.

/// The sound key of `word`, a folded lowercase word as the text analyzer produces it.
///
/// Rules, in order: `ph` → `f`; `ck`, `q` and `c` before anything but `e`/`i`/`y` → `k`,
/// `c` before `e`/`i`/`y` → `s`; `z` → `s`; `x` → `ks`; `y` → `i`; `h` is dropped unless
/// it starts the word or follows `c` or `s`; a run of the same letter is one letter; a
/// final run of vowels that are all `e` or `i` is `i` ("-ie", "-y", "-ey", "-ee" sound
/// alike; "-ay" does not).
/// Digits and other characters pass through.
pub(crate) fn sound_key(word: &str) -> String {
    let chars: Vec<char> = word.chars().collect();
    let mut mapped: Vec<char> = Vec::with_capacity(chars.len() + 2);
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        match c {
            'p' if next == Some('h') => {
                mapped.push('f');
                i += 1;
            }
            'c' if next == Some('k') => {
                mapped.push('k');
                i += 1;
            }
            'c' if matches!(next, Some('e' | 'i' | 'y')) => mapped.push('s'),
            'c' | 'q' => mapped.push('k'),
            'z' => mapped.push('s'),
            'x' => mapped.extend(['k', 's']),
            'y' => mapped.push('i'),
            'h' if i > 0 && !matches!(chars[i - 1], 'c' | 's') => {}
            _ => mapped.push(c),
        }
        i += 1;
    }
    mapped.dedup();
    let is_vowel = |c: &char| matches!(c, 'a' | 'e' | 'i' | 'o' | 'u');
    let tail = mapped.iter().rev().take_while(|c| is_vowel(c)).count();
    // Only when the word is more than its final vowels ("ie" stays "ie").
    if tail > 0 && tail < mapped.len() {
        let start = mapped.len() - tail;
        if mapped[start..].iter().all(|&c| c == 'e' || c == 'i') {
            mapped.truncate(start);
            mapped.push('i');
        }
    }
    mapped.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::sound_key;

    #[test]
    fn names_that_sound_alike_share_a_key() {
        let pairs = [
            ("stephen", "stefen"),
            ("kelly", "kellie"),
            ("kelly", "kelley"),
            ("murphy", "murfie"),
            ("catherine", "katherine"),
            ("sarah", "sara"),
            ("thomas", "tomas"),
            ("aaron", "aron"),
            ("jennifer", "jenifer"),
            ("phillips", "filips"),
            ("amy", "ami"),
            ("stacey", "stacy"),
            ("mark", "marc"),
            ("gonzalez", "gonsales"),
        ];
        for (a, b) in pairs {
            assert_eq!(sound_key(a), sound_key(b), "{a} / {b}");
        }
    }

    #[test]
    fn names_that_sound_different_keep_different_keys() {
        let pairs = [
            ("mendoza", "medina"),
            ("kelly", "kelso"),
            ("sara", "sam"),
            ("tay", "the"),
            ("john", "jon"),
        ];
        for (a, b) in pairs.iter().take(4) {
            assert_ne!(sound_key(a), sound_key(b), "{a} / {b}");
        }
        // "h" after a consonant other than c or s is silent: John and Jon do sound alike.
        assert_eq!(sound_key(pairs[4].0), sound_key(pairs[4].1));
    }

    #[test]
    fn odd_words_pass_through() {
        assert_eq!(sound_key(""), "");
        assert_eq!(sound_key("24k"), "24k");
        assert_eq!(sound_key("ie"), "ie");
        assert_eq!(sound_key("h"), "h");
        assert_eq!(sound_key("x"), "ks");
    }
}
