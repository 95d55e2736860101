//! Specifications of the matching that forgives how people really type (issue 14), one
//! test per class — words run together, a word split apart, sound-alike spellings, two
//! slips in a name of 5–7 letters, a slip in a short word, a venue word beside a misspelled
//! performer — on a small catalog of its own, each with a query that found nothing or the
//! wrong event before, and the budget's limits beside it.

use crate::doc::EventDoc;
use crate::query::SearchQuery;
use crate::testdata::{DAY_MS, T0_MS};
use crate::SearchIndex;

/// `(id, event name, performers, venue, city)`, one day apart in this order.
const ROWS: &[(&str, &str, &[&str], &str, &str)] = &[
    (
        "t01",
        "Summer Nights",
        &["Jason Mendoza"],
        "Grand Hall",
        "Lyon",
    ),
    (
        "t02",
        "Live in Paris",
        &["Jason Miller"],
        "Mendoza Arena",
        "Paris",
    ),
    (
        "t03",
        "Echoes",
        &["The Velvet Tigers"],
        "Blue Room",
        "Berlin",
    ),
    (
        "t04",
        "Acoustic Set",
        &["Stephen Kelly"],
        "Old Mill",
        "Dublin",
    ),
    ("t05", "Songs", &["Amy Castillo"], "Harbour Club", "Porto"),
    ("t06", "Reunion", &["Sarah Stone"], "Pier Six", "Oslo"),
    ("t07", "Spring Tour", &["Sara Mills"], "Stone Arena", "Oslo"),
    ("t08", "Late Show", &["Sara Hill"], "Stone Lounge", "Oslo"),
    ("t09", "Folk Night", &["Connor Murphy"], "The Snug", "Cork"),
    ("t10", "Garden Party", &["Leo Grant"], "Castle Park", "Bath"),
];

fn index() -> SearchIndex {
    let index = SearchIndex::create_in_ram().unwrap();
    for (day, (id, name, performers, venue, city)) in ROWS.iter().enumerate() {
        index
            .upsert(&EventDoc {
                event_id: (*id).into(),
                name: (*name).into(),
                description: "live music".into(),
                category: "Concert".into(),
                performers: performers.iter().map(|p| (*p).into()).collect(),
                performer_ids: performers.iter().map(|p| p.to_lowercase()).collect(),
                venue_name: (*venue).into(),
                city: (*city).into(),
                country: "Europe".into(),
                starts_at_ms: T0_MS + day as i64 * DAY_MS,
                min_price_minor: 1_000,
                max_price_minor: 2_000,
                currency: "EUR".into(),
                available: 10,
                total: 10,
                on_sale: true,
            })
            .unwrap();
    }
    index.commit(1).unwrap();
    index
}

fn ids(index: &SearchIndex, q: &str) -> Vec<String> {
    let query = SearchQuery {
        q: Some(q.into()),
        ..SearchQuery::default()
    };
    let page = index.search(&query).unwrap();
    page.hits.into_iter().map(|h| h.event_id).collect()
}

#[test]
fn words_run_together_find_the_name() {
    let index = index();
    assert_eq!(ids(&index, "jasonmendoza"), ["t01"]);
    assert_eq!(
        ids(&index, "JasonMendosa"),
        ["t01"],
        "run together and misspelled"
    );
    assert_eq!(ids(&index, "velvettigers"), ["t03"]);
    assert_eq!(ids(&index, "the velvettigers"), ["t03"]);
    assert_eq!(ids(&index, "thevelvettigers"), ["t03"], "the whole name");
    assert_eq!(ids(&index, "amycastillo"), ["t05"]);
}

#[test]
fn a_word_split_apart_is_read_as_one() {
    let index = index();
    // Merged words are looked up in performers and event names only, not in t02's venue.
    assert_eq!(ids(&index, "men doza"), ["t01"]);
    assert_eq!(ids(&index, "jason men doza"), ["t01"]);
    assert_eq!(ids(&index, "amy cast illo"), ["t05"]);
    assert_eq!(ids(&index, "amy cast ilo"), ["t05"], "split and misspelled");
}

#[test]
fn names_that_sound_alike_match() {
    let index = index();
    // Two and three edits away: beyond a one-edit allowance, the same sound.
    assert_eq!(ids(&index, "stefen kellie"), ["t04"]);
    assert_eq!(ids(&index, "connor murfie"), ["t09"]);
    assert_eq!(ids(&index, "murfie"), ["t09"]);
}

#[test]
fn two_slips_in_a_mid_length_name_when_the_rest_is_exact() {
    let index = index();
    // "mnedozo" is two edits from "mendoza" (7 letters, allowance one).
    assert_eq!(ids(&index, "jason mnedozo"), ["t01"]);
    assert_eq!(ids(&index, "castilol amy"), ["t05"]);
    // A prefix of the last word counts as right: the slip is still allowed.
    assert_eq!(ids(&index, "mnedozo jaso"), ["t01"]);
    // With another slip elsewhere the budget is spent.
    assert_eq!(ids(&index, "jasn mnedozo"), Vec::<String>::new());
}

#[test]
fn a_short_word_may_slip_when_the_rest_is_exact() {
    let index = index();
    assert_eq!(ids(&index, "ami castillo"), ["t05"]);
    assert_eq!(ids(&index, "aym castillo"), ["t05"]);
    assert_eq!(ids(&index, "teh velvet tigers"), ["t03"]);
    assert_eq!(ids(&index, "lea grant"), ["t10"]);
    // Alone, the short word is the whole query: the page is not empty.
    assert_eq!(ids(&index, "aym"), ["t05"]);
    // Two slips in all (one in the short word): too far.
    assert_eq!(ids(&index, "aym castilo"), Vec::<String>::new());
}

#[test]
fn performer_evidence_beats_an_exact_venue_word() {
    let index = index();
    // "Sara" is exactly two other performers' first name and "Stone" their venue's word;
    // the user meant Sarah Stone, whose performer field has both words (one misspelled).
    assert_eq!(ids(&index, "sara stone"), ["t06", "t07", "t08"]);
    // "Mendoza" is exact in t02's venue; "jasn" a slip of both Jasons.
    assert_eq!(ids(&index, "jasn mendoza"), ["t01", "t02"]);
}

#[test]
fn words_side_by_side_in_a_name_outrank_words_found_apart() {
    let index = index();
    // t02 has "jason" in its performer and "mendoza" in its venue; t01 has both, together.
    assert_eq!(ids(&index, "jasn mendosa"), ["t01", "t02"]);
    assert_eq!(ids(&index, "jason mend"), ["t01", "t02"]);
    assert_eq!(ids(&index, "mendoza jason"), ["t01", "t02"]);
}

#[test]
fn exact_and_prefix_queries_rank_as_before() {
    let index = index();
    assert_eq!(
        ids(&index, "jason mendoza"),
        ["t01", "t02"],
        "performer, then venue"
    );
    assert_eq!(ids(&index, "jason men"), ["t01", "t02"]);
    assert_eq!(ids(&index, "stone"), ["t06", "t07", "t08"]);
}
