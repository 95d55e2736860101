//! Specification of search behaviour on the fixed test catalog (`testdata.rs`): each test
//! states a query and the exact ordered list of events it must return. (Over 600 lines: one
//! catalog, many short specifications; the classes of real typing are in `typo_tests.rs`.)

use super::*;
use crate::query::{MAX_LIMIT, MAX_QUERY_CHARS, MAX_QUERY_TERMS};
use crate::suggest::{SuggestionKind, MAX_SUGGEST_LIMIT};
use crate::testdata::{catalog, DAY_MS, T0_MS};

fn loaded_index() -> SearchIndex {
    let index = SearchIndex::create_in_ram().unwrap();
    for doc in catalog() {
        index.upsert(&doc).unwrap();
    }
    index.commit(1).unwrap();
    index
}

fn text(q: &str) -> SearchQuery {
    SearchQuery {
        q: Some(q.into()),
        ..SearchQuery::default()
    }
}

fn ids(index: &SearchIndex, query: &SearchQuery) -> Vec<String> {
    let page = index.search(query).unwrap();
    page.hits.into_iter().map(|h| h.event_id).collect()
}

fn scored(index: &SearchIndex, query: &SearchQuery) -> Vec<(String, f32)> {
    let page = index.search(query).unwrap();
    page.hits
        .into_iter()
        .map(|h| (h.event_id, h.score))
        .collect()
}

fn day(n: i64) -> i64 {
    T0_MS + n * DAY_MS
}

#[test]
fn performer_beats_name_beats_description_and_ties_go_by_date() {
    let index = loaded_index();
    // 58 = two exact performer words (10 + 15 each) side by side (8); 48 = two exact name
    // words (10 + 14); 22 = two exact description words (10 + 1).
    assert_eq!(
        scored(&index, &text("taylor swift")),
        [
            ("e01".into(), 58.0),
            ("e02".into(), 58.0),
            ("e03".into(), 58.0),
            ("e18".into(), 48.0),
            ("e27".into(), 22.0),
        ]
    );
}

#[test]
fn misspelled_words_still_find_the_performer() {
    let index = loaded_index();
    // "tayler" is also one edit from "tyler", but e17 has nothing like "swfit".
    assert_eq!(
        scored(&index, &text("tayler swfit")),
        [
            ("e01".into(), 44.0), // two performer typos side by side, 2 × (3 + 15) + 8
            ("e02".into(), 44.0),
            ("e03".into(), 44.0),
            ("e18".into(), 35.0), // "taylor" in the name (3 + 14) + "swifties" (3 + 15)
        ]
    );
    // e27 mentions both only in its description, where typos do not match.
    assert_eq!(ids(&index, &text("beyonse")), ["e04", "e05"]);
    assert_eq!(ids(&index, &text("Kendrik Lamarr")), ["e12", "e29", "e20"]);
}

#[test]
fn the_last_word_matches_as_a_prefix() {
    let index = loaded_index();
    assert_eq!(
        ids(&index, &text("tay")),
        ["e01", "e02", "e03", "e18", "e27"]
    );
    // "weeknd" as an exact prefix (6 + 15) beats "weekend" one edit away (3 + 14).
    assert_eq!(
        scored(&index, &text("weekn")),
        [
            ("e06".into(), 21.0),
            ("e07".into(), 21.0),
            ("e19".into(), 21.0),
            ("e30".into(), 17.0),
        ]
    );
    // Only the last word is a prefix: "tay" alone is not a word.
    assert_eq!(ids(&index, &text("tay swift")), Vec::<String>::new());
    assert_eq!(
        ids(&index, &text("swift tay")),
        ["e01", "e02", "e03", "e18", "e27"]
    );
}

#[test]
fn short_words_slip_only_in_performers_and_names_when_the_rest_is_exact() {
    let index = loaded_index();
    assert_eq!(ids(&index, &text("sza")), ["e29"]);
    // One edit beyond a 3-letter word's allowance: allowed when nothing else slips.
    assert_eq!(scored(&index, &text("sze")), [("e29".into(), 15.0)]);
    assert_eq!(ids(&index, &text("kendrick sze")), ["e29"]);
    assert_eq!(ids(&index, &text("kendrik sze")), Vec::<String>::new());
    assert_eq!(ids(&index, &text("the weeknd")), ["e06", "e07", "e19"]);
}

#[test]
fn accents_and_case_are_ignored() {
    let index = loaded_index();
    let expected = ["e04", "e05", "e27"];
    for q in ["beyonce", "Beyoncé", "BEYONCÉ", "  beyonce!  "] {
        assert_eq!(ids(&index, &text(q)), expected, "{q}");
    }
    assert_eq!(ids(&index, &text("rosalia")), ["e15"]);
    // Performer "Zürich Jazz Trio" (10 + 15) before the city (10 + 2) of two other events.
    assert_eq!(ids(&index, &text("zurich")), ["e30", "e28", "e16"]);
}

#[test]
fn a_performer_typo_beats_an_exact_description_word_but_not_an_exact_performer() {
    let index = loaded_index();
    // e28 "Adela" is one edit from "adele" and earlier: below the exact performer, above
    // the karaoke night that only names her in its description.
    assert_eq!(
        scored(&index, &text("adele")),
        [
            ("e08".into(), 25.0),
            ("e28".into(), 18.0),
            ("e27".into(), 11.0)
        ]
    );
    assert_eq!(
        scored(&index, &text("adela")),
        [("e28".into(), 25.0), ("e08".into(), 18.0)]
    );
}

#[test]
fn descriptions_match_words_and_prefixes_but_not_typos() {
    let index = loaded_index();
    assert_eq!(scored(&index, &text("anthems")), [("e27".into(), 11.0)]);
    assert_eq!(scored(&index, &text("anthe")), [("e27".into(), 7.0)]);
    assert_eq!(ids(&index, &text("anthens")), Vec::<String>::new());
}

#[test]
fn every_word_must_match() {
    let index = loaded_index();
    assert_eq!(ids(&index, &text("taylor marseille")), Vec::<String>::new());
    assert_eq!(ids(&index, &text("paris marseille")), ["e21"]);
}

#[test]
fn filters_alone_list_events_by_date() {
    let index = loaded_index();
    let by = |f: fn(&mut SearchQuery)| {
        let mut q = SearchQuery::default();
        f(&mut q);
        ids(&index, &q)
    };
    assert_eq!(
        by(|q| q.city = Some("Paris".into())),
        ["e27", "e21", "e18", "e01", "e04", "e11"]
    );
    assert_eq!(
        by(|q| q.city = Some(" PARIS ".into())),
        by(|q| q.city = Some("paris".into()))
    );
    assert_eq!(
        by(|q| q.city = Some("zurich".into())),
        ["e28", "e30", "e16"]
    );
    assert_eq!(by(|q| q.city = Some("São Paulo".into())), ["e14"]);
    assert_eq!(by(|q| q.city = Some("Paulo".into())), Vec::<String>::new());
    assert_eq!(by(|q| q.category = Some("festival".into())), ["e19", "e20"]);
    assert_eq!(by(|q| q.category = Some("SPORTS".into())), ["e21", "e22"]);
    assert_eq!(
        by(|q| q.performer = Some("p-weeknd".into())),
        ["e06", "e07", "e19"]
    );
    assert_eq!(
        by(|q| q.performer = Some("P-WEEKND".into())),
        Vec::<String>::new()
    );
    assert_eq!(
        by(|q| {
            q.from_ms = Some(day(10));
            q.to_ms = Some(day(20));
        }),
        ["e01", "e30", "e04", "e17", "e06", "e23", "e11", "e24"]
    );
    assert_eq!(by(|q| q.from_ms = Some(day(60))), ["e14", "e19", "e20"]);
    assert_eq!(by(|q| q.to_ms = Some(day(5))), ["e27", "e26", "e28"]);
    assert_eq!(
        by(|q| {
            q.from_ms = Some(day(5));
            q.to_ms = Some(day(5));
        }),
        Vec::<String>::new()
    );
}

#[test]
fn filters_combine_with_text_and_each_other() {
    let index = loaded_index();
    let paris_swift = SearchQuery {
        city: Some("paris".into()),
        ..text("taylor swift")
    };
    assert_eq!(ids(&index, &paris_swift), ["e01", "e18", "e27"]);
    let london_tour = SearchQuery {
        city: Some("London".into()),
        ..text("tour")
    };
    assert_eq!(ids(&index, &london_tour), ["e02"]);
    let beyonce_tour = SearchQuery {
        performer: Some("p-beyonce".into()),
        ..text("tour")
    };
    assert_eq!(ids(&index, &beyonce_tour), ["e04", "e05"]);
    let madrid_concerts_later = SearchQuery {
        city: Some("madrid".into()),
        category: Some("concert".into()),
        from_ms: Some(day(20)),
        ..SearchQuery::default()
    };
    assert_eq!(ids(&index, &madrid_concerts_later), ["e07", "e15"]);
    let swift_in_june = SearchQuery {
        from_ms: Some(day(0)),
        to_ms: Some(day(16)),
        ..text("tayler swfit")
    };
    assert_eq!(ids(&index, &swift_in_june), ["e01", "e18"]);
}

#[test]
fn no_text_and_no_filter_lists_everything_by_date() {
    let index = loaded_index();
    let page = index
        .search(&SearchQuery {
            limit: MAX_LIMIT,
            ..SearchQuery::default()
        })
        .unwrap();
    let mut expected = catalog();
    expected.sort_by_key(|d| d.starts_at_ms);
    let expected: Vec<String> = expected.into_iter().map(|d| d.event_id).collect();
    let got: Vec<String> = page.hits.iter().map(|h| h.event_id.clone()).collect();
    assert_eq!(got, expected);
    assert_eq!(page.total_estimate, 30);
    assert_eq!(page.next_cursor, None);
    assert!(page.hits.iter().all(|h| h.score == 0.0));
}

#[test]
fn hits_carry_the_result_card() {
    let index = loaded_index();
    let page = index.search(&text("kendrick")).unwrap();
    let hit = &page.hits[1];
    assert_eq!(hit.event_id, "e29");
    assert_eq!(hit.name, "Kendrick Lamar & SZA");
    assert_eq!(hit.performers, ["Kendrick Lamar", "SZA"]);
    assert_eq!(hit.performer_ids, ["p-kendrick", "p-sza"]);
    assert_eq!(
        (hit.venue_name.as_str(), hit.city.as_str()),
        ("SoFi Stadium", "Los Angeles")
    );
    assert_eq!(
        (hit.country.as_str(), hit.category.as_str()),
        ("United States", "Concert")
    );
    assert_eq!(hit.starts_at_ms, day(55));
    assert_eq!((hit.min_price_minor, hit.max_price_minor), (8_000, 80_000));
    assert_eq!(
        (hit.currency.as_str(), hit.available, hit.total),
        ("EUR", 945, 1_000)
    );
    assert!(hit.on_sale);
}

/// Follows cursors with pages of `limit` and returns every id seen, in order.
fn all_pages(index: &SearchIndex, query: &SearchQuery, limit: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut cursor = None;
    let total = index.search(query).unwrap().total_estimate;
    for _ in 0..100 {
        let page = index
            .search(&SearchQuery {
                limit,
                cursor: cursor.clone(),
                ..query.clone()
            })
            .unwrap();
        assert_eq!(page.total_estimate, total);
        assert!(page.hits.len() <= limit);
        out.extend(page.hits.into_iter().map(|h| h.event_id));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return out,
        }
    }
    panic!("pagination did not end");
}

#[test]
fn pages_neither_repeat_nor_skip() {
    let index = loaded_index();
    let queries = [
        SearchQuery::default(),
        text("tour"),
        text("tayler swfit"),
        SearchQuery {
            city: Some("london".into()),
            ..SearchQuery::default()
        },
        SearchQuery {
            category: Some("concert".into()),
            ..text("the")
        },
    ];
    for query in queries {
        let one_page = ids(
            &index,
            &SearchQuery {
                limit: MAX_LIMIT,
                ..query.clone()
            },
        );
        assert!(!one_page.is_empty());
        for limit in [1, 3, 7] {
            assert_eq!(
                all_pages(&index, &query, limit),
                one_page,
                "{query:?} by {limit}"
            );
        }
    }
}

#[test]
fn an_exactly_full_last_page_has_no_cursor() {
    let index = loaded_index();
    let festival = SearchQuery {
        category: Some("festival".into()),
        limit: 2,
        ..SearchQuery::default()
    };
    let page = index.search(&festival).unwrap();
    assert_eq!(page.hits.len(), 2);
    assert_eq!(page.next_cursor, None);
}

#[test]
fn a_cursor_survives_changes_before_it() {
    let index = loaded_index();
    let first = index
        .search(&SearchQuery {
            limit: 3,
            ..SearchQuery::default()
        })
        .unwrap();
    let first_ids: Vec<_> = first.hits.iter().map(|h| h.event_id.as_str()).collect();
    assert_eq!(first_ids, ["e27", "e26", "e28"]);
    // An event before the cursor appears and one after it is deleted: an offset would now
    // repeat e28; the cursor continues after e28.
    let mut early = catalog().remove(0);
    early.event_id = "e00".into();
    early.starts_at_ms = day(1);
    index.upsert(&early).unwrap();
    index.delete("e21").unwrap();
    index.commit(2).unwrap();
    let next = SearchQuery {
        limit: 3,
        cursor: first.next_cursor,
        ..SearchQuery::default()
    };
    assert_eq!(ids(&index, &next), ["e18", "e22", "e01"]);
}

#[test]
fn bad_input_is_rejected_as_such() {
    let index = loaded_index();
    let cursor_of_other_query = index
        .search(&SearchQuery {
            limit: 1,
            ..text("taylor")
        })
        .unwrap()
        .next_cursor;
    assert!(cursor_of_other_query.is_some());
    let bad = [
        SearchQuery {
            limit: 0,
            ..SearchQuery::default()
        },
        SearchQuery {
            limit: MAX_LIMIT + 1,
            ..SearchQuery::default()
        },
        text(&"x".repeat(MAX_QUERY_CHARS + 1)),
        text(&"word ".repeat(MAX_QUERY_TERMS + 1)),
        SearchQuery {
            cursor: Some("garbage".into()),
            ..SearchQuery::default()
        },
        SearchQuery {
            cursor: cursor_of_other_query,
            ..text("swift")
        },
        SearchQuery {
            from_ms: Some(2),
            to_ms: Some(1),
            ..SearchQuery::default()
        },
        SearchQuery {
            city: Some("x".repeat(200)),
            ..SearchQuery::default()
        },
    ];
    for query in bad {
        match index.search(&query) {
            Err(e) => assert!(e.is_bad_input(), "{query:?}: {e}"),
            Ok(_) => panic!("{query:?} was accepted"),
        }
    }
}

#[test]
fn odd_input_does_not_fail() {
    let index = loaded_index();
    let odd = [
        "",
        "   ",
        "?!*",
        "a",
        "e",
        "ß",
        "٣",
        "🎸 taylor",
        "tay\u{0}lor",
        "\u{202e}swift",
        "x/y\\z:\"(",
        "taylor~1",
        "AND OR NOT",
        "-swift",
        "*",
        "[a TO z]",
    ];
    for q in odd {
        assert!(index.search(&text(q)).is_ok(), "{q:?}");
        assert!(index.suggest(q, 5).is_ok(), "{q:?}");
    }
    // Words longer than the indexed maximum are dropped; with no word left, q is absent.
    let long_word = "y".repeat(MAX_QUERY_CHARS);
    assert_eq!(index.search(&text(&long_word)).unwrap().total_estimate, 30);
    let extremes = SearchQuery {
        from_ms: Some(i64::MIN),
        to_ms: Some(i64::MAX),
        ..SearchQuery::default()
    };
    assert_eq!(index.search(&extremes).unwrap().total_estimate, 30);
}

#[test]
fn upsert_replaces_the_previous_version() {
    let index = loaded_index();
    assert_eq!(ids(&index, &text("hard soft")), ["e13"]);
    let mut renamed = catalog().into_iter().find(|d| d.event_id == "e13").unwrap();
    renamed.name = "Happier Than Ever".into();
    index.upsert(&renamed).unwrap();
    assert_eq!(
        ids(&index, &text("hard soft")),
        ["e13"],
        "visible only after commit"
    );
    index.commit(2).unwrap();
    assert_eq!(ids(&index, &text("hard soft")), Vec::<String>::new());
    assert_eq!(ids(&index, &text("happier")), ["e13"]);
    assert_eq!(index.num_docs(), 30);
}

#[test]
fn delete_removes_and_tolerates_unknown_ids() {
    let index = loaded_index();
    index.delete("e21").unwrap();
    index.delete("no-such-event").unwrap();
    index.commit(2).unwrap();
    assert_eq!(ids(&index, &text("marseille")), Vec::<String>::new());
    assert_eq!(index.num_docs(), 29);
    index.delete_all().unwrap();
    index.commit(3).unwrap();
    assert_eq!(index.num_docs(), 0);
    assert_eq!(index.indexed_upto(), Some(3));
}

#[test]
fn invalid_documents_are_refused() {
    let index = loaded_index();
    let mut doc = catalog().remove(0);
    doc.event_id = String::new();
    assert!(matches!(
        index.upsert(&doc),
        Err(SearchError::InvalidDocument(_))
    ));
}

#[test]
fn indexed_upto_survives_reopening_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("search");
    {
        let index = SearchIndex::open_or_create_in_dir(&path).unwrap();
        assert_eq!(index.indexed_upto(), None);
        for doc in catalog() {
            index.upsert(&doc).unwrap();
        }
        index.commit(42).unwrap();
        // A second writer on the same directory is refused, as an internal error.
        let second = SearchIndex::open_or_create_in_dir(&path).unwrap_err();
        assert!(!second.is_bad_input(), "{second}");
        // Uncommitted writes are lost on close.
        index.delete("e01").unwrap();
    }
    let reopened = SearchIndex::open_or_create_in_dir(&path).unwrap();
    assert_eq!(reopened.indexed_upto(), Some(42));
    assert_eq!(reopened.num_docs(), 30);
    assert_eq!(
        ids(&reopened, &text("tayler swfit")),
        ["e01", "e02", "e03", "e18"]
    );
}

#[test]
fn suggestions_offer_performers_then_events() {
    let index = loaded_index();
    let suggest = |prefix: &str| -> Vec<(SuggestionKind, String, Option<String>)> {
        index
            .suggest(prefix, 5)
            .unwrap()
            .into_iter()
            .map(|s| (s.kind, s.text, s.event_id.or(s.performer_id)))
            .collect()
    };
    use SuggestionKind::{Event, Performer};
    let owned = |k, t: &str, id: &str| (k, t.to_owned(), Some(id.to_owned()));
    assert_eq!(
        suggest("tay"),
        [
            owned(Performer, "Taylor Swift", "p-taylor"),
            owned(Event, "Tribute to Taylor Swift", "e18"),
            owned(Event, "Taylor Swift | The Eras Tour", "e01"),
        ]
    );
    assert_eq!(
        suggest("weekn"),
        [
            owned(Performer, "The Weeknd", "p-weeknd"),
            owned(Event, "Weekend Jazz Brunch", "e30"),
        ]
    );
    assert_eq!(
        suggest("beyonse"),
        [owned(Performer, "Beyoncé", "p-beyonce")]
    );
    // Of the three performers of e19 only the one typed is suggested.
    assert_eq!(suggest("ed sh"), [owned(Performer, "Ed Sheeran", "p-ed")]);
    assert_eq!(suggest("  "), []);
    assert!(matches!(
        index.suggest("tay", 0),
        Err(SearchError::InvalidLimit { .. })
    ));
    assert!(matches!(
        index.suggest("tay", MAX_SUGGEST_LIMIT + 1),
        Err(SearchError::InvalidLimit { .. })
    ));
}

#[test]
fn suggestions_respect_the_limit() {
    let index = loaded_index();
    let tour = index.suggest("tour", 2).unwrap();
    assert_eq!(tour.len(), 2);
    assert!(tour.iter().all(|s| s.kind == SuggestionKind::Event));
}

#[test]
fn ties_across_segments_are_ordered_by_event_id() {
    // One commit per document, no merging: every event in its own segment.
    let index = SearchIndex::create_in_ram().unwrap();
    index.stop_merging();
    let mut docs = catalog();
    for suffix in ["-c", "-a", "-b"] {
        let mut twin = docs[0].clone();
        twin.event_id = format!("e01{suffix}");
        docs.push(twin);
    }
    for (i, doc) in docs.iter().enumerate() {
        index.upsert(doc).unwrap();
        index.commit(i as u64).unwrap();
    }
    assert_eq!(index.segment_count(), 33);
    let swift = text("taylor swift");
    assert_eq!(
        ids(&index, &swift),
        ["e01", "e01-a", "e01-b", "e01-c", "e02", "e03", "e18", "e27"]
    );
    for query in [swift, SearchQuery::default(), text("tour")] {
        let one_page = ids(
            &index,
            &SearchQuery {
                limit: MAX_LIMIT,
                ..query.clone()
            },
        );
        for limit in [1, 2, 3] {
            assert_eq!(
                all_pages(&index, &query, limit),
                one_page,
                "{query:?} by {limit}"
            );
        }
    }
}

#[test]
fn seeking_common_words_finds_what_reading_them_finds() {
    use crate::collect::TopEvents;
    use crate::query::forgiving_text_query;
    let index = loaded_index();
    let searcher = index.reader.searcher();
    let run = |q: &str, seek_ratio: u64| -> Vec<(u32, tantivy::DocAddress)> {
        let words = crate::schema::words(q);
        let query = forgiving_text_query(&words, &index.fields).with_seek_ratio(seek_ratio);
        let collector = TopEvents {
            limit: MAX_LIMIT,
            after: None,
            from_ms: None,
            to_ms: None,
            scored: true,
        };
        let collected = searcher.search(&query, &collector).unwrap();
        collected
            .hits
            .iter()
            .map(|h| (h.score_q, h.address))
            .collect()
    };
    for q in [
        "the weeknd",
        "tayler swfit",
        "taylor the",
        "stadium the",
        "concert paris tour",
        "sze kendrick lamar",
        "tay lor swift",
    ] {
        let read = run(q, u64::MAX);
        assert!(!read.is_empty(), "{q}");
        assert_eq!(run(q, 0), read, "{q}");
    }
}

#[test]
fn compaction_leaves_one_segment_and_the_same_answers() {
    let index = SearchIndex::create_in_ram().unwrap();
    index.stop_merging();
    for (i, doc) in catalog().iter().enumerate() {
        index.upsert(doc).unwrap();
        if i % 5 == 4 {
            index.commit(i as u64).unwrap();
        }
    }
    index.commit(30).unwrap();
    let queries = [text("tayler swfit"), text("tour"), SearchQuery::default()];
    let before: Vec<Vec<String>> = queries.iter().map(|q| ids(&index, q)).collect();
    index.compact().unwrap();
    assert_eq!(index.segment_count(), 1);
    let after: Vec<Vec<String>> = queries.iter().map(|q| ids(&index, q)).collect();
    assert_eq!(after, before);
    assert_eq!(index.indexed_upto(), Some(30));
}

/// A seeded stream (SplitMix64, from `rand_xoshiro`) for the generated catalog below.
struct Rng(rand_xoshiro::SplitMix64);

impl Rng {
    fn new(seed: u64) -> Rng {
        use rand_xoshiro::rand_core::SeedableRng;
        Rng(rand_xoshiro::SplitMix64::seed_from_u64(seed))
    }
    fn next(&mut self) -> u64 {
        use rand_xoshiro::rand_core::RngCore;
        self.0.next_u64()
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

#[test]
fn generated_catalogs_page_sort_and_filter_consistently() {
    const WORDS: &[&str] = &[
        "taylor", "swift", "tayler", "beyonce", "live", "tour", "the", "night", "weekend",
        "weeknd", "jazz", "paris", "parks", "stone", "stones", "rolling", "adele", "adela",
    ];
    const CITIES: &[&str] = &["Paris", "London", "Zürich", "São Paulo"];
    const CATEGORIES: &[&str] = &["Concert", "Festival", "Sports"];
    let (mut n_queries, mut n_answered) = (0, 0);
    for seed in 1..=4u64 {
        let mut rng = Rng::new(seed);
        let index = SearchIndex::create_in_ram().unwrap();
        index.stop_merging();
        let mut n_events = 0;
        for i in 0..150 {
            let mut words = |n: usize| {
                (0..n)
                    .map(|_| rng.pick(WORDS))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            let name = words(3);
            let performer = words(2);
            let description = words(6);
            let doc = EventDoc {
                event_id: format!("g{:03}", rng.below(120)), // some ids repeat: upserts
                name,
                description,
                performers: vec![performer],
                performer_ids: vec![format!("p{}", rng.below(5))],
                category: rng.pick(CATEGORIES).into(),
                city: rng.pick(CITIES).into(),
                starts_at_ms: day(rng.below(10) as i64), // many equal times: ties
                ..EventDoc::default()
            };
            index.upsert(&doc).unwrap();
            if i % 17 == 0 {
                index.commit(i).unwrap(); // several segments
            }
            n_events += 1;
        }
        index.commit(n_events).unwrap();
        assert!(index.segment_count() > 1, "seed {seed}");
        for _ in 0..25 {
            let n_words = rng.below(3);
            let q = (0..n_words)
                .map(|_| rng.pick(WORDS))
                .collect::<Vec<_>>()
                .join(" ");
            let query = SearchQuery {
                q: (!q.is_empty()).then_some(q),
                city: (rng.below(3) == 0).then(|| rng.pick(CITIES).to_lowercase()),
                category: (rng.below(3) == 0).then(|| rng.pick(CATEGORIES).into()),
                performer: (rng.below(4) == 0).then(|| format!("p{}", rng.below(5))),
                from_ms: (rng.below(3) == 0).then(|| day(rng.below(5) as i64)),
                to_ms: (rng.below(3) == 0).then(|| day(5 + rng.below(5) as i64)),
                limit: MAX_LIMIT,
                cursor: None,
            };
            let page = index.search(&query).unwrap();
            n_queries += 1;
            n_answered += usize::from(page.hits.len() > 1);
            assert_eq!(page.total_estimate, page.hits.len() as u64, "{query:?}");
            assert_eq!(page.next_cursor, None);
            // Sorted by score, then start time, then id; ids unique.
            for pair in page.hits.windows(2) {
                let (a, b) = (&pair[0], &pair[1]);
                let ordered = a.score > b.score
                    || (a.score == b.score && a.starts_at_ms < b.starts_at_ms)
                    || (a.score == b.score
                        && a.starts_at_ms == b.starts_at_ms
                        && a.event_id < b.event_id);
                assert!(ordered, "{query:?}: {} before {}", a.event_id, b.event_id);
            }
            // Every hit passes the filters.
            for hit in &page.hits {
                if let Some(city) = &query.city {
                    assert_eq!(&hit.city.to_lowercase(), city);
                }
                if let Some(category) = &query.category {
                    assert_eq!(&hit.category, category);
                }
                if let Some(performer) = &query.performer {
                    assert!(hit.performer_ids.contains(performer));
                }
                assert!(query.from_ms.is_none_or(|from| hit.starts_at_ms >= from));
                assert!(query.to_ms.is_none_or(|to| hit.starts_at_ms < to));
            }
            let all: Vec<String> = page.hits.into_iter().map(|h| h.event_id).collect();
            for limit in [1, 4, 9] {
                assert_eq!(
                    all_pages(&index, &query, limit),
                    all,
                    "{query:?} by {limit}"
                );
            }
        }
    }
    // Not vacuous: most queries have several hits to order and page through.
    assert!(n_answered * 2 > n_queries, "{n_answered} of {n_queries}");
}
