//! Benchmark of the search index (a program, not a test; figures, never pass/fail):
//! generates a deterministic synthetic catalog (performers from first/last-name and band
//! word lists, 66 real cities, skewed popularity), builds the index on disk, reports build
//! time, size and memory; runs the misspelled queries once on the index as built (several
//! segments), compacts it, then runs misspelled, exact, type-ahead, filter-only, suggest and
//! adversarial workloads, reporting latency percentiles, throughput (1 and 2 threads), CPU
//! per query and recall (the intended performer in the top 20). (Over 600 lines: one
//! self-contained program — generator, phases, export; the query classes of real typing
//! live in `search_bench/classes.rs`.)
//!
//! Misspellings are derived from the real names: one edit per word of 4+ letters (drop,
//! swap or replace a letter, never the first); and, per class, the slips people really make
//! (`search_bench/classes.rs`: joins, splits, phonetic rewrites, two slips in a 5–7 letter
//! word, a slip in a short word, a misspelled name beside a word that also names venues). Wall-clock figures include whatever else
//! the machine runs: the load average and the CPU time per query are printed beside them.
//!
//! ```text
//! CARGO_TARGET_DIR=/work/target-search cargo bench -p boxoffice-search
//! BENCH_EVENTS=100000 BENCH_SECONDS=2 cargo bench -p boxoffice-search
//! ```
//!
//! Environment: `BENCH_EVENTS` (default 1,000,000), `BENCH_SECONDS` per timed phase
//! (default 3), `BENCH_QUERIES` misspelled queries (default 1,000), `BENCH_SEED`,
//! `BENCH_INDEX_DIR` (keep the built index there and reuse it on the next run),
//! `BENCH_SHOW_MISSES` (how many missed queries each recall pass lists, default 5),
//! `BENCH_RECALL_ONLY=1` (stop after the recall passes, for tuning), `BENCH_EXPLAIN="q1|q2"`
//! (print the best hits of these queries and stop).
//!
//! `BENCH_EXPORT_DIR=dir` also writes the catalog exactly as indexed (`events.tsv`) and the
//! query sets exactly as run (`queries.tsv`), in PostgreSQL's `COPY` text format, for the
//! side-by-side run of `search/bench/postgres.sh`; with `BENCH_EXPORT_ONLY=1` the program
//! stops there, without building the index.

use std::collections::HashSet;
use std::io::{BufWriter, Write as _};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use boxoffice_search::{EventDoc, IndexOptions, SearchIndex, SearchQuery};
use rand_xoshiro::rand_core::{RngCore, SeedableRng};
use rand_xoshiro::SplitMix64;

#[path = "search_bench/classes.rs"]
mod classes;

/// Default number of synthetic events.
const DEFAULT_EVENTS: usize = 1_000_000;
/// Default length of each timed phase, in seconds.
const DEFAULT_SECONDS: u64 = 3;
/// Default number of misspelled queries.
const DEFAULT_QUERIES: usize = 1_000;
/// Events per performer on average (performers = events / this, clamped).
const EVENTS_PER_PERFORMER: usize = 20;
/// Most distinct performers generated.
const MAX_PERFORMERS: usize = 50_000;
/// Results a query returns, and the window recall is measured in.
const TOP_K: usize = 20;
/// Commit every this many events while building (bounded writer memory, resumable).
const BUILD_COMMIT_EVERY: usize = 250_000;
/// Writer sizing for the bulk build: both cores, a modest buffer each.
const BUILD_OPTIONS: IndexOptions = IndexOptions {
    writer_threads: 2,
    writer_memory_bytes_per_thread: 32_000_000,
};
/// Calendar start: 2025-06-15T00:00:00Z in unix ms, and the span events fall in.
const T0_MS: i64 = 1_750_000_000_000;
const SPAN_MS: i64 = 730 * 86_400_000;
const DAY_MS: i64 = 86_400_000;

const FIRST_NAMES: &str = "James Mary John Patricia Robert Jennifer Michael Linda William Elizabeth David Barbara Richard Susan Joseph Jessica Thomas Sarah Charles Karen Daniel Nancy Matthew Lisa Anthony Betty Mark Margaret Donald Sandra Steven Ashley Paul Kimberly Andrew Emily Joshua Donna Kenneth Michelle Kevin Carol Brian Amanda George Melissa Timothy Deborah Ronald Stephanie Jason Rebecca Edward Sharon Jeffrey Laura Ryan Cynthia Jacob Amy Gary Kathleen Nicholas Angela Eric Shirley Jonathan Anna Stephen Brenda Larry Pamela Justin Emma Scott Nicole Brandon Helen Benjamin Samantha Samuel Katherine Gregory Christine Alexander Debra Frank Rachel Patrick Carolyn Raymond Janet Jack Maria Dennis Olivia Jerry Heather Tyler Diane Aaron Julie Jose Joyce Adam Victoria Nathan Kelly Henry Christina Zachary Lauren Douglas Joan Peter Evelyn Kyle Judith Noah Megan Ethan Andrea Jeremy Cheryl Walter Hannah Christian Jacqueline Keith Martha Roger Gloria Terry Teresa Austin Sean Sara Gerald Madison Carl Frances Harold Kathryn Dylan Janice Arthur Lawrence Abigail Jordan Alice Jesse Judy Bryan Sophia Billy Grace Bruce Denise Gabriel Amber Logan Marilyn Albert Danielle Eugene Theresa Russell Diana Vincent Natalie Philip Brittany Bobby Charlotte Johnny Bradley Kayla Alexis Léa Chloé Zoë Björn Søren Renée Aurélien François Mathéo Noémie Inés Joaquín Lucía Sofía Jürgen Anaïs Émile Yuki Hiroshi Min-jun Seo-yeon Aarav Priya Kwame Amara Mateus Valentina";
const LAST_NAMES: &str = "Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez Gonzalez Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson White Harris Sanchez Clark Ramirez Lewis Robinson Walker Young Allen King Wright Scott Torres Nguyen Hill Flores Green Adams Nelson Baker Hall Rivera Campbell Mitchell Carter Roberts Gomez Phillips Evans Turner Diaz Parker Cruz Edwards Collins Reyes Stewart Morris Morales Murphy Cook Rogers Gutierrez Ortiz Morgan Cooper Peterson Bailey Reed Kelly Howard Ramos Kim Cox Ward Richardson Watson Brooks Chavez Wood James Bennett Gray Mendoza Ruiz Hughes Price Alvarez Castillo Sanders Patel Myers Long Ross Foster Jimenez Powell Jenkins Perry Russell Sullivan Bell Coleman Butler Henderson Barnes Fisher Vasquez Simmons Romero Jordan Patterson Alexander Hamilton Graham Reynolds Griffin Wallace Moreno West Cole Hayes Bryant Herrera Gibson Ellis Tran Medina Aguilar Stevens Murray Ford Castro Marshall Owens Harrison Fernandez McDonald Woods Washington Kennedy Wells Vargas Henry Chen Freeman Webb Tucker Guzman Burns Crawford Olson Simpson Porter Hunter Gordon Mendez Silva Shaw Snyder Mason Dixon Muñoz Hunt Hicks Holmes Palmer Wagner Black Robertson Boyd Rose Stone Salazar Fox Warren Mills Meyer Rice Schmidt Garza Daniels Ferguson Nichols Stephens Soto Weaver Gardner Payne Grant Dunn Spencer Hawkins Arnold Pierce Vázquez Hansen Peters Santos Hart Knight Elliott Cunningham Duncan Armstrong Hudson Carroll Lane Riley Andrews Alvarado Delgado Berry Perkins Hoffman Johnston Matthews Peña Richards Willis Carpenter Sandoval Müller Schäfer Dubois Lefèvre Møller Åkesson Novák Kowalski Yamamoto Tanaka Okafor Mensah Kaur Sharma Haddad Nakamura Lindqvist Rossi Bianchi Ferrari Esposito Romano Moreau Laurent Girard Fontaine Kovač Horvat Popescu Ionescu Nielsen Larsen Berg Virtanen Costa Oliveira";
const ADJECTIVES: &str = "Velvet Electric Silver Golden Midnight Crimson Neon Broken Wild Hollow Lonely Burning Frozen Silent Cosmic Lucky Savage Gentle Restless Painted Hidden Iron Paper Glass Crystal Rusty Wandering Howling Dancing Sleeping Northern Southern Eastern Western Atomic Scarlet Violet Amber Emerald Sapphire Copper Marble Velour Lunar Solar Stellar Arctic Desert Tropical Urban Rural Royal Humble Electric Magnetic Psychedelic Radiant Shimmering Thunder Lightning Hazy Misty Dusty Smoky Sunny Rainy Stormy Windy Faded Bright Secret Sacred Vintage Modern Ancient Infinite Tiny Giant";
const NOUNS: &str = "Tigers Wolves Ravens Foxes Pilots Kings Queens Hearts Shadows Echoes Rivers Mountains Machines Strangers Dreamers Saints Sinners Lions Horses Owls Sparrows Comets Rockets Ghosts Giants Daggers Roses Lanterns Engines Monks Pirates Cowboys Sailors Bandits Poets Thieves Twins Orchids Drifters Rebels Vandals Arrows Lights Stones Waves Storms Flames Mirrors Clouds Bells Hounds Falcons Serpents Dragons Wizards Knights Captains Strangers Oceans Islands Valleys Canyons Meadows Forests Gardens Cathedrals Satellites Planets Galaxies Voyagers Nomads Gypsies Outlaws Orphans Widows Brothers Sisters Cousins Neighbours";
const CITIES: &str = "Paris:France Lyon:France Marseille:France London:United Kingdom Manchester:United Kingdom Glasgow:United Kingdom Dublin:Ireland Berlin:Germany Hamburg:Germany München:Germany Köln:Germany Wien:Austria Zürich:Switzerland Genève:Switzerland Amsterdam:Netherlands Rotterdam:Netherlands Bruxelles:Belgium Antwerpen:Belgium København:Denmark Stockholm:Sweden Göteborg:Sweden Oslo:Norway Helsinki:Finland Madrid:Spain Barcelona:Spain Sevilla:Spain València:Spain Lisboa:Portugal Porto:Portugal Roma:Italy Milano:Italy Napoli:Italy Torino:Italy Praha:Czechia Kraków:Poland Warszawa:Poland Budapest:Hungary Athína:Greece New York:United States Los Angeles:United States Chicago:United States Houston:United States Phoenix:United States Philadelphia:United States San Diego:United States Dallas:United States Austin:United States Seattle:United States Denver:United States Boston:United States Nashville:United States Miami:United States Atlanta:United States Toronto:Canada Montréal:Canada Vancouver:Canada Ciudad de México:Mexico São Paulo:Brazil Rio de Janeiro:Brazil Buenos Aires:Argentina Bogotá:Colombia Santiago:Chile Tokyo:Japan Osaka:Japan Seoul:South Korea Sydney:Australia Melbourne:Australia";
const VENUE_TYPES: &str = "Arena Stadium Hall Theatre Club Opera_House Amphitheatre Ballroom Pavilion Center Garden Dome Lounge Park Music_Hall Concert_Hall Coliseum Forum Playhouse Warehouse";
const CATEGORIES: &str = "Concert Concert Concert Concert Concert Concert Festival Theatre Comedy Sports Classical Family";
const DESCRIPTION_WORDS: &str = "a the an of and with in on for night show live music tour special guest songs new album stage sound lights dance classic hits fans open air seated standing tickets limited evening afternoon family friendly acoustic set encore orchestra band festival headline support vip package doors early late best greatest anniversary celebration intimate unforgettable experience performance featuring return world premiere original cast comedy laughs stand up season opener final championship match derby rivals home away legendary rising star voice guitar piano drums strings choir symphony concerto opera ballet theatre musical production award winning critically acclaimed sold out extra date added due to demand all ages bar food parking accessible seating general admission floor balcony lawn reserved premium front row meet greet merchandise exclusive first time ever only one";

/// A seeded stream (SplitMix64, from `rand_xoshiro`), enough for synthetic data.
struct Rng(SplitMix64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(SplitMix64::seed_from_u64(seed))
    }
    fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

struct Performer {
    id: String,
    name: String,
}

struct Vocabulary {
    first: Vec<&'static str>,
    last: Vec<&'static str>,
    adjectives: Vec<&'static str>,
    nouns: Vec<&'static str>,
    cities: Vec<(&'static str, &'static str)>,
    venue_types: Vec<String>,
    categories: Vec<&'static str>,
    description: Vec<&'static str>,
}

impl Vocabulary {
    fn new() -> Self {
        Vocabulary {
            first: FIRST_NAMES.split(' ').collect(),
            last: LAST_NAMES.split(' ').collect(),
            adjectives: ADJECTIVES.split(' ').collect(),
            nouns: NOUNS.split(' ').collect(),
            cities: CITIES
                .split(' ')
                .fold(Vec::<String>::new(), |mut acc, word| {
                    // Re-join multi-word cities: a word without ':' continues the previous.
                    match acc.last_mut() {
                        Some(last) if !last.contains(':') => {
                            last.push(' ');
                            last.push_str(word);
                        }
                        _ => acc.push(word.to_owned()),
                    }
                    acc
                })
                .into_iter()
                .filter_map(|pair| {
                    let (city, country) = pair.split_once(':')?;
                    let city: &'static str = Box::leak(city.to_owned().into_boxed_str());
                    let country: &'static str = Box::leak(country.to_owned().into_boxed_str());
                    Some((city, country))
                })
                .collect(),
            venue_types: VENUE_TYPES
                .split(' ')
                .map(|v| v.replace('_', " "))
                .collect(),
            categories: CATEGORIES.split(' ').collect(),
            description: DESCRIPTION_WORDS.split(' ').collect(),
        }
    }
}

/// Distinct performer names: solo artists, "The Adj Nouns" bands, "First & the Nouns".
fn performers(rng: &mut Rng, vocab: &Vocabulary, n: usize) -> Vec<Performer> {
    let mut seen = HashSet::with_capacity(n);
    let mut out = Vec::with_capacity(n);
    let mut attempts = 0usize;
    while out.len() < n && attempts < n * 50 {
        attempts += 1;
        let kind = rng.below(100);
        let name = if kind < 70 {
            format!("{} {}", rng.pick(&vocab.first), rng.pick(&vocab.last))
        } else if kind < 85 {
            format!(
                "The {} {}",
                rng.pick(&vocab.adjectives),
                rng.pick(&vocab.nouns)
            )
        } else {
            format!(
                "{} & the {}",
                rng.pick(&vocab.first),
                rng.pick(&vocab.nouns)
            )
        };
        if seen.insert(name.clone()) {
            out.push(Performer {
                id: format!("p{}", out.len()),
                name,
            });
        }
    }
    out
}

/// Event `i` of the synthetic catalog. Performers are picked with a skew (a few have many
/// events, most a handful); `counts` tallies events per performer.
fn event(
    rng: &mut Rng,
    vocab: &Vocabulary,
    performers: &[Performer],
    counts: &mut [u32],
    i: usize,
) -> EventDoc {
    let category = *rng.pick(&vocab.categories);
    let n_performers = match category {
        "Festival" => 2 + rng.below(3),
        "Sports" => 2,
        _ if rng.chance(15) => 2,
        _ => 1,
    };
    let mut chosen: Vec<&Performer> = Vec::with_capacity(n_performers);
    for _ in 0..n_performers {
        // Square of a uniform draw: low indexes (popular performers) come up more often.
        let u = rng.below(1 << 20) as u64;
        let idx = ((((u * u) >> 20) as usize) * performers.len()) >> 20;
        let idx = if rng.chance(50) {
            idx
        } else {
            rng.below(performers.len())
        };
        let p = &performers[idx.min(performers.len() - 1)];
        if !chosen.iter().any(|c| c.id == p.id) {
            counts[idx.min(performers.len() - 1)] += 1;
            chosen.push(p);
        }
    }
    let (city, country) = *rng.pick(&vocab.cities);
    let venue = if rng.chance(50) {
        format!("{} {}", city, rng.pick(&vocab.venue_types))
    } else {
        format!("{} {}", rng.pick(&vocab.last), rng.pick(&vocab.venue_types))
    };
    let headliner = &chosen[0].name;
    let name = match (category, rng.below(5)) {
        ("Festival", _) => format!(
            "{} {} {} Festival",
            city,
            rng.pick(&vocab.adjectives),
            rng.pick(&vocab.nouns)
        ),
        ("Sports", _) => format!(
            "{} vs {}",
            headliner,
            chosen.get(1).map_or("TBA", |p| &p.name)
        ),
        (_, 0) => format!(
            "{} | The {} {} Tour",
            headliner,
            rng.pick(&vocab.adjectives),
            rng.pick(&vocab.nouns)
        ),
        (_, 1) => format!("{headliner} Live in {city}"),
        (_, 2) => format!("An Evening with {headliner}"),
        (_, 3) => format!(
            "{headliner}: {} {}",
            rng.pick(&vocab.adjectives),
            rng.pick(&vocab.nouns)
        ),
        _ => format!(
            "{} {} Night",
            rng.pick(&vocab.adjectives),
            rng.pick(&vocab.nouns)
        ),
    };
    let n_words = 8 + rng.below(13);
    let description = (0..n_words)
        .map(|_| *rng.pick(&vocab.description))
        .collect::<Vec<_>>()
        .join(" ");
    let min_price = 1_500 + rng.below(10_000) as u64;
    let total = 200 + rng.below(60_000) as u64;
    EventDoc {
        event_id: format!("evt-{i:08}"),
        name,
        description,
        category: category.to_owned(),
        performers: chosen.iter().map(|p| p.name.clone()).collect(),
        performer_ids: chosen.iter().map(|p| p.id.clone()).collect(),
        venue_name: venue,
        city: city.to_owned(),
        country: country.to_owned(),
        starts_at_ms: T0_MS + (rng.next_u64() % SPAN_MS as u64) as i64 / 60_000 * 60_000,
        min_price_minor: min_price,
        max_price_minor: min_price + rng.below(40_000) as u64,
        currency: "EUR".to_owned(),
        available: rng.below(total as usize) as u64,
        total,
        on_sale: rng.chance(90),
    }
}

/// One typo per word: words of 5+ letters lose, swap or change a letter; 4-letter words
/// swap or change one (a drop would leave 3 letters, which must match exactly); shorter
/// words are kept.
fn misspell(rng: &mut Rng, name: &str) -> String {
    let mut words = Vec::new();
    for word in name.split_whitespace() {
        let chars: Vec<char> = word.chars().collect();
        let n = chars.len();
        if n < 4 || !chars.iter().all(|c| c.is_alphabetic()) {
            words.push(word.to_owned());
            continue;
        }
        let mut c = chars.clone();
        let edit = if n >= 5 {
            rng.below(3)
        } else {
            1 + rng.below(2)
        };
        let pos = 1 + rng.below(n - 2); // keep the first letter, as people usually do
        match edit {
            0 => {
                c.remove(pos);
            }
            1 => c.swap(pos, pos + 1),
            _ => {
                let replacement = (b'a' + rng.below(26) as u8) as char;
                c[pos] = if replacement == c[pos].to_ascii_lowercase() {
                    'x'
                } else {
                    replacement
                };
            }
        }
        words.push(c.into_iter().collect());
    }
    words.join(" ")
}

/// The query sets of one run, all derived from performers that have at least one event:
/// each entry is the text a user types and the performer it is meant to find.
struct QuerySets<'a> {
    targets: Vec<&'a Performer>,
    misspelled: Vec<(String, &'a str)>,
    exact: Vec<(String, &'a str)>,
    /// All words of the name but the last, then the first 3 letters of the last.
    prefixes: Vec<String>,
    /// The classes of `classes.rs` (joins, splits, phonetic, …), each with its queries.
    classes: Vec<(&'static str, Vec<(String, &'a str)>)>,
}

fn query_sets<'a>(
    seed: u64,
    n_queries: usize,
    performers: &'a [Performer],
    counts: &[u32],
    vocab: &Vocabulary,
) -> QuerySets<'a> {
    let targets: Vec<&Performer> = {
        let with_events: Vec<usize> = (0..performers.len()).filter(|&i| counts[i] > 0).collect();
        let mut qrng = Rng::new(seed ^ 0xa11ce);
        (0..n_queries)
            .map(|_| &performers[with_events[qrng.below(with_events.len())]])
            .collect()
    };
    let mut qrng = Rng::new(seed ^ 0x7e57);
    let misspelled = targets
        .iter()
        .map(|p| (misspell(&mut qrng, &p.name), p.id.as_str()))
        .collect();
    let exact = targets
        .iter()
        .map(|p| (p.name.clone(), p.id.as_str()))
        .collect();
    let prefixes = targets
        .iter()
        .map(|p| {
            let words: Vec<&str> = p.name.split_whitespace().collect();
            let last: String = words[words.len() - 1].chars().take(3).collect();
            let mut head = words[..words.len() - 1].join(" ");
            if !head.is_empty() {
                head.push(' ');
            }
            format!("{head}{last}")
        })
        .collect();
    // The classes draw from more performers: some names offer no place for a class's slip.
    let class_targets: Vec<&Performer> = {
        let with_events: Vec<usize> = (0..performers.len()).filter(|&i| counts[i] > 0).collect();
        let mut crng = Rng::new(seed ^ 0xc1a55e5);
        (0..n_queries * 20)
            .map(|_| &performers[with_events[crng.below(with_events.len())]])
            .collect()
    };
    let vocabulary: HashSet<String> = [&vocab.first, &vocab.last, &vocab.adjectives, &vocab.nouns]
        .into_iter()
        .flat_map(|words| words.iter().map(|w| w.to_lowercase()))
        .collect();
    let places = classes::PlaceWords::new(&vocab.last, &vocab.cities);
    let classes = classes::class_sets(
        seed,
        n_queries,
        &class_targets,
        performers,
        &places,
        &vocabulary,
    );
    QuerySets {
        targets,
        misspelled,
        exact,
        prefixes,
        classes,
    }
}

/// Writes the catalog and the query sets for another engine, in PostgreSQL `COPY` text
/// format (tab-separated, `\`-escaped, arrays as `{"a","b"}` literals).
///
/// `events.tsv`: event_id, name, performers (array), performer_ids (array), venue_name,
/// city, country, category, description, starts_at_ms, min_price_minor, max_price_minor,
/// available, total. `queries.tsv`: kind (`misspelled`, `exact`, `prefix`, then the classes
/// of `classes.rs`: `join`, `split`, `phonetic`, `two-slips`, `short`, `venue-word`), query number
/// within its kind (from 1), the query text, the intended performer id.
struct Export {
    dir: std::path::PathBuf,
    events: BufWriter<std::fs::File>,
}

impl Export {
    fn create(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let events = BufWriter::new(std::fs::File::create(dir.join("events.tsv"))?);
        Ok(Export {
            dir: dir.to_owned(),
            events,
        })
    }

    fn event(&mut self, doc: &EventDoc) -> std::io::Result<()> {
        let array = |items: &[String]| copy_text(&pg_array(items));
        writeln!(
            self.events,
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            copy_text(&doc.event_id),
            copy_text(&doc.name),
            array(&doc.performers),
            array(&doc.performer_ids),
            copy_text(&doc.venue_name),
            copy_text(&doc.city),
            copy_text(&doc.country),
            copy_text(&doc.category),
            copy_text(&doc.description),
            doc.starts_at_ms,
            doc.min_price_minor,
            doc.max_price_minor,
            doc.available,
            doc.total,
        )
    }

    fn finish(mut self, sets: &QuerySets) -> std::io::Result<()> {
        self.events.flush()?;
        let mut out = BufWriter::new(std::fs::File::create(self.dir.join("queries.tsv"))?);
        let prefixes: Vec<(String, &str)> = sets
            .prefixes
            .iter()
            .zip(&sets.targets)
            .map(|(q, p)| (q.clone(), p.id.as_str()))
            .collect();
        let fixed = [
            ("misspelled", &sets.misspelled),
            ("exact", &sets.exact),
            ("prefix", &prefixes),
        ];
        let classes = sets.classes.iter().map(|(kind, set)| (*kind, set));
        for (kind, set) in fixed.into_iter().chain(classes) {
            for (n, (q, id)) in set.iter().enumerate() {
                writeln!(
                    out,
                    "{kind}\t{}\t{}\t{}",
                    n + 1,
                    copy_text(q),
                    copy_text(id)
                )?;
            }
        }
        out.flush()?;
        println!(
            "export: events.tsv and queries.tsv written to {}",
            self.dir.display()
        );
        Ok(())
    }
}

fn export_event(export: &mut Option<Export>, doc: &EventDoc) {
    if let Some(export) = export.as_mut() {
        export.event(doc).expect("export event");
    }
}

/// Escapes a value for the `COPY` text format.
fn copy_text(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out
}

/// A PostgreSQL array literal of text values, every element quoted.
fn pg_array(items: &[String]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|s| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    format!("{{{}}}", quoted.join(","))
}

fn status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Resident memory: total, of which heap (anonymous) and mapped index files, and the peak.
fn memory() -> String {
    format!(
        "RSS {} MiB = {} MiB heap + {} MiB mapped files (peak {} MiB)",
        status_kb("VmRSS:") / 1024,
        status_kb("RssAnon:") / 1024,
        status_kb("RssFile:") / 1024,
        status_kb("VmHWM:") / 1024
    )
}

fn dir_bytes(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

struct Latencies(Vec<Duration>);

impl Latencies {
    fn report(mut self, label: &str, elapsed: Duration) {
        self.0.sort();
        let n = self.0.len();
        if n == 0 {
            println!("{label}: no queries ran");
            return;
        }
        let at = |p: f64| self.0[((n as f64 * p) as usize).min(n - 1)];
        println!(
            "{label}: {n} queries in {:.1} s = {:.0} q/s; p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            elapsed.as_secs_f64(),
            n as f64 / elapsed.as_secs_f64(),
            at(0.50).as_secs_f64() * 1e3,
            at(0.90).as_secs_f64() * 1e3,
            at(0.99).as_secs_f64() * 1e3,
            self.0[n - 1].as_secs_f64() * 1e3,
        );
    }
}

/// CPU time this thread has run, in ns (from the scheduler; 0 where unavailable).
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// The 1-minute load average: other processes on the machine skew wall-clock figures.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

/// Runs `queries` round-robin on `threads` threads for `duration`; returns the latencies,
/// the wall time and the CPU time the threads used.
fn timed<Q: Sync>(
    threads: usize,
    duration: Duration,
    queries: &[Q],
    run: impl Fn(&Q) + Sync,
) -> (Latencies, Duration) {
    let start = Instant::now();
    let per_thread: Vec<(Vec<Duration>, u64)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let run = &run;
                scope.spawn(move || {
                    let cpu_start = thread_cpu_ns();
                    let mut out = Vec::new();
                    let mut i = t * queries.len() / threads.max(1);
                    while start.elapsed() < duration {
                        let q = &queries[i % queries.len()];
                        let began = Instant::now();
                        run(q);
                        out.push(began.elapsed());
                        i += 1;
                    }
                    (out, thread_cpu_ns().saturating_sub(cpu_start))
                })
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    let elapsed = start.elapsed();
    let cpu_ns: u64 = per_thread.iter().map(|(_, c)| c).sum();
    let latencies: Vec<Duration> = per_thread.into_iter().flat_map(|(l, _)| l).collect();
    let n = latencies.len().max(1) as u64;
    print!(
        "[load {}, cpu {:.2} ms/query] ",
        load_average(),
        cpu_ns as f64 / n as f64 / 1e6
    );
    (Latencies(latencies), elapsed)
}

fn main() {
    // `cargo bench` passes `--bench`; other arguments are ignored too.
    let n_events: usize = env_or("BENCH_EVENTS", DEFAULT_EVENTS);
    let seconds: u64 = env_or("BENCH_SECONDS", DEFAULT_SECONDS);
    let n_queries: usize = env_or("BENCH_QUERIES", DEFAULT_QUERIES);
    let seed: u64 = env_or("BENCH_SEED", 0x5eed_b0c5);
    let phase = Duration::from_secs(seconds);
    let n_performers = (n_events / EVENTS_PER_PERFORMER).clamp(100, MAX_PERFORMERS);
    println!(
        "boxoffice-search bench: {n_events} events, {n_performers} performers, seed {seed:#x}, {seconds} s per phase, {} cores",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    let vocab = Vocabulary::new();
    let mut rng = Rng::new(seed);
    let performers = performers(&mut rng, &vocab, n_performers);
    let mut counts = vec![0u32; performers.len()];
    let mut export = match std::env::var("BENCH_EXPORT_DIR") {
        Ok(dir) => match Export::create(Path::new(&dir)) {
            Ok(export) => Some(export),
            Err(e) => {
                eprintln!("cannot export to {dir}: {e}");
                std::process::exit(1);
            }
        },
        Err(_) => None,
    };
    if export.is_some() && env_or("BENCH_EXPORT_ONLY", 0u8) == 1 {
        for i in 0..n_events {
            let doc = event(&mut rng, &vocab, &performers, &mut counts, i);
            export_event(&mut export, &doc);
        }
        let sets = query_sets(seed, n_queries, &performers, &counts, &vocab);
        if let Some(export) = export {
            export.finish(&sets).expect("export queries");
        }
        return;
    }

    // BENCH_INDEX_DIR keeps the index between runs (rebuilt when its size differs);
    // otherwise it lives in a temp dir removed at exit.
    let temp = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("cannot create a temp dir: {e}");
            std::process::exit(1);
        }
    };
    let path = match std::env::var("BENCH_INDEX_DIR") {
        Ok(dir) => Path::new(&dir).join(format!("events-{n_events}-{seed:x}")),
        Err(_) => temp.path().join("index"),
    };
    let reuse = SearchIndex::open_or_create_in_dir(&path)
        .map(|index| index.indexed_upto() == Some(n_events as u64))
        .unwrap_or(false);
    if reuse {
        // Same generator, same sequence: regenerate only to count events per performer.
        for i in 0..n_events {
            let doc = event(&mut rng, &vocab, &performers, &mut counts, i);
            export_event(&mut export, &doc);
        }
        println!("build: reusing {}", path.display());
    } else {
        let _ = std::fs::remove_dir_all(&path);
        let build_start = Instant::now();
        let index =
            SearchIndex::open_or_create_in_dir_with(&path, BUILD_OPTIONS).expect("open index");
        for i in 0..n_events {
            let doc = event(&mut rng, &vocab, &performers, &mut counts, i);
            export_event(&mut export, &doc);
            index.upsert(&doc).expect("upsert");
            if (i + 1) % BUILD_COMMIT_EVERY == 0 {
                index.commit(i as u64 + 1).expect("commit");
                println!(
                    "  {} events indexed after {:.1} s, {}",
                    i + 1,
                    build_start.elapsed().as_secs_f64(),
                    memory()
                );
            }
        }
        index.commit(n_events as u64).expect("commit");
        let indexed = build_start.elapsed();
        index.wait_for_merges().expect("merges");
        let built = build_start.elapsed();
        println!(
            "build: {n_events} events in {:.1} s ({:.0} events/s; {:.1} s of it waiting for merges)",
            built.as_secs_f64(),
            n_events as f64 / built.as_secs_f64(),
            (built - indexed).as_secs_f64(),
        );
    }
    let reopen_start = Instant::now();
    let index = Arc::new(SearchIndex::open_or_create_in_dir(&path).expect("reopen"));
    println!(
        "reopen: {:.0} ms",
        reopen_start.elapsed().as_secs_f64() * 1e3
    );
    println!(
        "index: {} docs, {} segments, {:.1} MiB on disk; {}",
        index.num_docs(),
        index.segment_count(),
        dir_bytes(&path) as f64 / (1024.0 * 1024.0),
        memory()
    );

    let sets = query_sets(seed, n_queries, &performers, &counts, &vocab);
    if let Some(export) = export.take() {
        export.finish(&sets).expect("export queries");
    }
    let QuerySets {
        targets,
        misspelled,
        exact,
        prefixes,
        classes,
    } = sets;
    println!("sample misspellings:");
    for (q, id) in misspelled.iter().take(6) {
        let name = &performers[id[1..].parse::<usize>().unwrap_or(0)].name;
        println!("  {name:?} -> {q:?}");
    }

    let search = |q: &str| {
        index
            .search(&SearchQuery {
                q: Some(q.to_owned()),
                limit: TOP_K,
                ..SearchQuery::default()
            })
            .expect("search")
    };
    if let Ok(explain) = std::env::var("BENCH_EXPLAIN") {
        for q in explain.split('|') {
            let page = search(q);
            println!("{q:?}: {} hits", page.total_estimate);
            for hit in page.hits.iter().take(8) {
                println!(
                    "  {:5.1} {:?} {:?} at {:?}, {}",
                    hit.score, hit.performers, hit.name, hit.venue_name, hit.city
                );
            }
        }
        return;
    }
    let show_misses: usize = env_or("BENCH_SHOW_MISSES", 5);
    let recall = |set: &[(String, &str)], label: &str| {
        let start = Instant::now();
        let mut latencies = Vec::with_capacity(set.len());
        let mut slowest: Vec<(Duration, &str)> = Vec::new();
        let mut found = 0usize;
        let mut empty = 0usize;
        let mut missed: Vec<String> = Vec::new();
        for (q, id) in set {
            let began = Instant::now();
            let page = search(q);
            latencies.push(began.elapsed());
            slowest.push((began.elapsed(), q.as_str()));
            if page.hits.is_empty() {
                empty += 1;
            }
            if page
                .hits
                .iter()
                .any(|h| h.performer_ids.iter().any(|p| p == id))
            {
                found += 1;
            } else if missed.len() < show_misses {
                let intended = id
                    .strip_prefix('p')
                    .and_then(|n| n.parse::<usize>().ok())
                    .and_then(|n| performers.get(n))
                    .map_or("?", |p| p.name.as_str());
                missed.push(format!(
                    "{q:?} (for {intended:?}, {} hits)",
                    page.total_estimate
                ));
            }
        }
        println!(
            "recall@{TOP_K} {label}: {found}/{} = {:.1}% ({empty} queries returned nothing)",
            set.len(),
            100.0 * found as f64 / set.len().max(1) as f64
        );
        if !missed.is_empty() {
            println!("  missed, e.g.: {}", missed.join(", "));
        }
        Latencies(latencies).report(&format!("  one pass, {label}"), start.elapsed());
        slowest.sort_by_key(|s| std::cmp::Reverse(s.0));
        let shown: Vec<String> = slowest
            .iter()
            .take(5)
            .map(|(d, q)| format!("{q:?} {:.1} ms", d.as_secs_f64() * 1e3))
            .collect();
        println!("  slowest: {}", shown.join(", "));
    };
    // First as built (several segments, as a node's index usually is), then compacted.
    let n_segments = index.segment_count();
    if n_segments > 1 {
        recall(&misspelled, &format!("misspelled, {n_segments} segments"));
        let compact_start = Instant::now();
        index.compact().expect("compact");
        println!(
            "compact: {n_segments} segments merged into {} in {:.1} s; {:.1} MiB on disk",
            index.segment_count(),
            compact_start.elapsed().as_secs_f64(),
            dir_bytes(&path) as f64 / (1024.0 * 1024.0),
        );
    }
    recall(&misspelled, "misspelled");
    recall(&exact, "exact");
    let typed: Vec<(String, &str)> = prefixes
        .iter()
        .zip(&targets)
        .map(|(q, p)| (q.clone(), p.id.as_str()))
        .collect();
    recall(&typed, "type-ahead");
    for (class, set) in &classes {
        println!(
            "sample {class}: {:?}",
            set.iter().take(4).map(|(q, _)| q).collect::<Vec<_>>()
        );
        recall(set, class);
    }
    let all_classes: Vec<&(String, &str)> = classes.iter().flat_map(|(_, set)| set).collect();
    if env_or("BENCH_RECALL_ONLY", 0u8) == 1 {
        return;
    }

    let (lat, el) = timed(1, phase, &misspelled, |(q, _)| {
        search(q);
    });
    lat.report("misspelled, 1 thread ", el);
    let (lat, el) = timed(2, phase, &misspelled, |(q, _)| {
        search(q);
    });
    lat.report("misspelled, 2 threads", el);
    let (lat, el) = timed(1, phase, &all_classes, |(q, _)| {
        search(q);
    });
    lat.report("new classes, 1 thread ", el);
    let (lat, el) = timed(1, phase, &exact, |(q, _)| {
        search(q);
    });
    lat.report("exact,      1 thread ", el);
    let (lat, el) = timed(1, phase, &prefixes, |q| {
        search(q);
    });
    lat.report("type-ahead, 1 thread ", el);
    let filters: Vec<SearchQuery> = (0..100)
        .map(|i| {
            let (city, _) = vocab.cities[i % vocab.cities.len()];
            SearchQuery {
                city: Some(city.to_owned()),
                from_ms: Some(T0_MS + (i as i64 * 7) * DAY_MS),
                to_ms: Some(T0_MS + (i as i64 * 7 + 30) * DAY_MS),
                limit: TOP_K,
                ..SearchQuery::default()
            }
        })
        .collect();
    let (lat, el) = timed(1, phase, &filters, |q| {
        index.search(q).expect("search");
    });
    lat.report("city + 30-day range, no text, 1 thread", el);
    let (lat, el) = timed(1, phase, &prefixes, |q| {
        index.suggest(q, 8).expect("suggest");
    });
    lat.report("suggest(8),  1 thread ", el);
    let mut n_suggestions = 0usize;
    let mut n_found = 0usize;
    for (prefix, target) in prefixes.iter().zip(&targets) {
        let suggestions = index.suggest(prefix, 8).expect("suggest");
        n_suggestions += suggestions.len();
        if suggestions
            .iter()
            .any(|s| s.performer_id.as_deref() == Some(target.id.as_str()))
        {
            n_found += 1;
        }
    }
    println!(
        "suggest(8) on type-ahead prefixes: {:.1} suggestions on average; the intended performer among them {:.1}% of the time",
        n_suggestions as f64 / prefixes.len().max(1) as f64,
        100.0 * n_found as f64 / prefixes.len().max(1) as f64
    );
    // Worst cases a client can send within the limits: the most words, all common; the
    // most words, all long (two typos each, the largest automata).
    let mut arng = Rng::new(seed ^ 0xbad);
    let common: Vec<String> = (0..100)
        .map(|_| {
            (0..boxoffice_search::MAX_QUERY_TERMS)
                .map(|_| *arng.pick(&vocab.description))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    let long: Vec<String> = (0..100)
        .map(|_| {
            (0..boxoffice_search::MAX_QUERY_TERMS)
                .map(|_| {
                    (0..30)
                        .map(|_| (b'a' + arng.below(26) as u8) as char)
                        .collect::<String>()
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    let (lat, el) = timed(1, phase, &common, |q| {
        search(q);
    });
    lat.report("adversarial: 8 common words, 1 thread", el);
    let (lat, el) = timed(1, phase, &long, |q| {
        search(q);
    });
    lat.report("adversarial: 8 words of 30 letters, 1 thread", el);
    println!("after queries: {}", memory());
}
