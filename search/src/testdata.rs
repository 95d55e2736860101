//! A small fixed catalog for unit tests: 30 hand-written events with real-looking
//! performers, venues in eight cities, six categories, and a few deliberate near-misses
//! ("Tyler, The Creator" for "tayler", "Adela" for "adele", "Weekend Jazz Brunch" for
//! "weekn", a tribute night and a karaoke night that only mention Taylor Swift).

use crate::doc::EventDoc;

/// Start of the test calendar: 2025-06-15T00:00:00Z, in unix ms.
pub(crate) const T0_MS: i64 = 1_750_000_000_000;
/// One day in ms.
pub(crate) const DAY_MS: i64 = 86_400_000;

/// `(id, name, [(performer id, performer)], venue, city, country, category, day, description)`
type Row = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    i64,
    &'static str,
);

const TAYLOR: (&str, &str) = ("p-taylor", "Taylor Swift");
const BEYONCE: (&str, &str) = ("p-beyonce", "Beyoncé");
const WEEKND: (&str, &str) = ("p-weeknd", "The Weeknd");
const DUA: (&str, &str) = ("p-dua", "Dua Lipa");
const ED: (&str, &str) = ("p-ed", "Ed Sheeran");
const KENDRICK: (&str, &str) = ("p-kendrick", "Kendrick Lamar");
const BILLIE: (&str, &str) = ("p-billie", "Billie Eilish");

#[rustfmt::skip]
const ROWS: &[Row] = &[
    ("e01", "Taylor Swift | The Eras Tour", &[TAYLOR], "Stade de France", "Paris", "France", "Concert", 10, "A three-hour journey through every musical era."),
    ("e02", "Taylor Swift | The Eras Tour", &[TAYLOR], "Wembley Stadium", "London", "United Kingdom", "Concert", 20, "A three-hour journey through every musical era."),
    ("e03", "Taylor Swift | The Eras Tour", &[TAYLOR], "Olympiastadion", "Berlin", "Germany", "Concert", 30, "A three-hour journey through every musical era."),
    ("e04", "Renaissance World Tour", &[BEYONCE], "Stade de France", "Paris", "France", "Concert", 12, "Club-culture spectacle with a full live band."),
    ("e05", "Renaissance World Tour", &[BEYONCE], "MetLife Stadium", "New York", "United States", "Concert", 40, "Club-culture spectacle with a full live band."),
    ("e06", "After Hours til Dawn", &[WEEKND], "SoFi Stadium", "Los Angeles", "United States", "Concert", 15, "Stadium show with fireworks."),
    ("e07", "After Hours til Dawn", &[WEEKND], "Estadio Santiago Bernabéu", "Madrid", "Spain", "Concert", 25, "Stadium show with fireworks."),
    ("e08", "An Evening with Adele", &[("p-adele", "Adele")], "Hollywood Bowl", "Los Angeles", "United States", "Concert", 50, "Ballads under the stars."),
    ("e09", "Music of the Spheres", &[("p-coldplay", "Coldplay")], "Wembley Stadium", "London", "United Kingdom", "Concert", 35, "Confetti, wristbands and lasers."),
    ("e10", "Mathematics Tour", &[ED], "Uber Arena", "Berlin", "Germany", "Concert", 45, "One man and a loop pedal."),
    ("e11", "Radical Optimism Tour", &[DUA], "Accor Arena", "Paris", "France", "Concert", 18, "Dance-pop night."),
    ("e12", "Grand National Tour", &[KENDRICK], "Madison Square Garden", "New York", "United States", "Concert", 22, "Hip-hop headline show."),
    ("e13", "Hit Me Hard and Soft", &[BILLIE], "The O2", "London", "United Kingdom", "Concert", 28, "Arena show in the round."),
    ("e14", "24K Magic Live", &[("p-bruno", "Bruno Mars")], "Allianz Parque", "São Paulo", "Brazil", "Concert", 60, "Funk and soul revue."),
    ("e15", "Motomami World Tour", &[("p-rosalia", "Rosalía")], "WiZink Center", "Madrid", "Spain", "Concert", 33, "Flamenco meets reggaeton."),
    ("e16", "Multitude", &[("p-stromae", "Stromae")], "Hallenstadion", "Zürich", "Switzerland", "Concert", 38, "Chanson and electronics."),
    ("e17", "Chromakopia: The World Tour", &[("p-tyler", "Tyler, The Creator")], "Crypto.com Arena", "Los Angeles", "United States", "Concert", 14, "Rap theatre in green."),
    ("e18", "Tribute to Taylor Swift", &[("p-swifties", "The Swifties")], "Café de la Danse", "Paris", "France", "Concert", 8, "Cover band playing the hits."),
    ("e19", "Summer Hits Festival", &[DUA, ED, WEEKND], "Hyde Park", "London", "United Kingdom", "Festival", 70, "Three headliners in one day."),
    ("e20", "Lollapalooza Berlin", &[BILLIE, KENDRICK], "Olympiastadion", "Berlin", "Germany", "Festival", 75, "Two days, four stages."),
    ("e21", "Paris Saint-Germain vs Olympique de Marseille", &[("p-psg", "Paris Saint-Germain"), ("p-om", "Olympique de Marseille")], "Parc des Princes", "Paris", "France", "Sports", 5, "Le Classique."),
    ("e22", "Real Madrid vs FC Barcelona", &[("p-rma", "Real Madrid"), ("p-fcb", "FC Barcelona")], "Estadio Santiago Bernabéu", "Madrid", "Spain", "Sports", 9, "El Clásico."),
    ("e23", "Berliner Philharmoniker: Mahler 5", &[("p-bphil", "Berliner Philharmoniker")], "Philharmonie", "Berlin", "Germany", "Classical", 16, "Symphony No. 5 in C-sharp minor."),
    ("e24", "Cirque du Soleil: Kooza", &[("p-cirque", "Cirque du Soleil")], "Royal Albert Hall", "London", "United Kingdom", "Theatre", 19, "Acrobats and clowns."),
    ("e25", "Trevor Noah: Off the Record", &[("p-trevor", "Trevor Noah")], "Beacon Theatre", "New York", "United States", "Comedy", 27, "Stand-up."),
    ("e26", "Hamilton", &[], "Victoria Palace Theatre", "London", "United Kingdom", "Theatre", 3, "The musical about a founding father."),
    ("e27", "Pop Karaoke Night", &[], "Le Baron", "Paris", "France", "Concert", 2, "Sing along to Taylor Swift, Beyoncé and Adele anthems."),
    ("e28", "Adela: Unplugged", &[("p-adela", "Adela")], "Moods", "Zürich", "Switzerland", "Concert", 4, "Songwriter in an intimate room."),
    ("e29", "Kendrick Lamar & SZA", &[KENDRICK, ("p-sza", "SZA")], "SoFi Stadium", "Los Angeles", "United States", "Concert", 55, "Co-headline stadium run."),
    ("e30", "Weekend Jazz Brunch", &[("p-zjt", "Zürich Jazz Trio")], "Moods", "Zürich", "Switzerland", "Concert", 11, "Standards with coffee."),
];

/// The catalog, in id order.
pub(crate) fn catalog() -> Vec<EventDoc> {
    ROWS.iter()
        .map(
            |&(id, name, performers, venue, city, country, category, day, description)| EventDoc {
                event_id: id.into(),
                name: name.into(),
                description: description.into(),
                category: category.into(),
                performers: performers.iter().map(|(_, n)| (*n).into()).collect(),
                performer_ids: performers.iter().map(|(i, _)| (*i).into()).collect(),
                venue_name: venue.into(),
                city: city.into(),
                country: country.into(),
                starts_at_ms: T0_MS + day * DAY_MS,
                min_price_minor: 2_500 + day as u64 * 100,
                max_price_minor: 25_000 + day as u64 * 1_000,
                currency: if country == "United Kingdom" {
                    "GBP"
                } else {
                    "EUR"
                }
                .into(),
                available: 1_000 - day as u64,
                total: 1_000,
                on_sale: day % 7 != 0,
            },
        )
        .collect()
}
