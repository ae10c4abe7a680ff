"""The words and the taxonomy the demo data is made of: pure data, no logic.

``recsite.demo`` draws titles, descriptions, people, merchandise and tastes from these lists;
keeping them apart keeps the generator readable. Changing any of them changes the demo data
generated for a seed.
"""

from __future__ import annotations

from dataclasses import dataclass

# --- Taxonomy --------------------------------------------------------------------------------
# (name, description, children); a child is a leaf name or another such tuple.

TAXONOMY: tuple = (
    (
        "Genre",
        "What kind of story it is. Broad genres hold finer sub-genres.",
        (
            ("Action", "Physical conflict, chases and set pieces.",
             ("Martial arts", "Heist", "Spy", "Disaster", "Superhero", "Military")),
            ("Adventure", "Journeys, quests and discoveries.",
             ("Treasure hunt", "Survival", "Swashbuckler", "Road trip")),
            ("Animation", "Animated stories for every age.",
             ("Stop-motion", "Computer-animated", "Hand-drawn", "Adult animation")),
            ("Anime", "Japanese animation and its many traditions.",
             ("Mecha", "Shonen", "Shojo", "Isekai", "Slice of life", "Seinen")),
            ("Comedy", "Made to make you laugh.",
             ("Romantic comedy", "Sitcom", "Satire", "Dark comedy", "Stand-up", "Parody",
              "Buddy comedy")),
            ("Crime", "Criminals, the people who chase them and the law.",
             ("Detective", "Gangster", "Police procedural", "Con artist", "Serial killer")),
            ("Documentary", "True stories about the real world.",
             ("Nature", "Historical", "Science", "Music", "Sports", "Biography", "Food",
              "Investigative")),
            ("Drama", "Characters, choices and consequences.",
             ("Legal drama", "Medical drama", "Period drama", "Family drama", "Political drama",
              "Coming-of-age", "Sports drama")),
            ("Fantasy", "Magic, myth and other worlds.",
             ("High fantasy", "Urban fantasy", "Fairy tale", "Sword and sorcery", "Mythology")),
            ("Horror", "Fear, dread and the things in the dark.",
             ("Supernatural", "Slasher", "Psychological horror", "Zombie", "Folk horror",
              "Found footage")),
            ("Kids and family", "Stories for children and the whole family.",
             ("Preschool", "Animal tales", "Musical", "Educational")),
            ("Reality", "Unscripted television.",
             ("Competition", "Cooking show", "Dating show", "Makeover", "Travel")),
            ("Romance", "Love stories.",
             ("Period romance", "Teen romance", "Second-chance romance", "Romantic drama")),
            ("Science fiction", "Science, technology and the future.",
             ("Space opera", "Cyberpunk", "Time travel", "Dystopian", "Alien invasion",
              "Post-apocalyptic")),
            ("Thriller", "Tension, danger and twists.",
             ("Psychological thriller", "Conspiracy", "Political thriller", "Techno-thriller",
              "Survival thriller")),
            ("Western", "The frontier and its myths.",
             ("Classic western", "Revisionist western", "Neo-western")),
        ),
    ),
    (
        "Mood",
        "How it feels to watch.",
        (
            ("Light", "Easy, warm and fun.",
             ("Feel-good", "Heartwarming", "Funny", "Whimsical", "Playful")),
            ("Intense", "Keeps you on the edge of your seat.",
             ("Suspenseful", "Exciting", "Scary", "Gritty", "Thrilling")),
            ("Emotional", "Moves you.",
             ("Romantic", "Tearjerker", "Bittersweet", "Inspiring", "Nostalgic")),
            ("Cerebral", "Makes you think.",
             ("Mind-bending", "Thought-provoking", "Mysterious", "Quirky")),
            ("Dark", "Bleak, heavy or disturbing.",
             ("Bleak", "Ominous", "Violent", "Cynical")),
        ),
    ),
    (
        "Theme",
        "What it is about underneath the plot.",
        (
            ("Relationships", "Bonds between people.",
             ("Family", "Friendship", "First love", "Rivalry", "Betrayal")),
            ("Society", "People and power.",
             ("Politics", "Class struggle", "Immigration", "Corruption", "Justice")),
            ("Personal journey", "How people change.",
             ("Redemption", "Revenge", "Identity", "Perseverance", "Grief")),
            ("Big ideas", "The world and where it is going.",
             ("Artificial intelligence", "Environment", "Power", "Faith", "Technology")),
            ("Work and ambition", "Careers, teams and winning.",
             ("Underdog", "Ambition", "Teamwork", "Greed", "Mentorship")),
        ),
    ),
    (
        "Audience",
        "Who it is made for.",
        (
            ("Kids", "Children.", ("Preschoolers", "Ages 6-9", "Ages 10-12")),
            ("Teens", "Teenagers.", ("Young teens", "Older teens")),
            ("Family", "Watch together.", ("All ages", "Family movie night")),
            ("Adults", "Grown-ups.", ("Young adults", "Mature", "Cinephiles")),
        ),
    ),
    (
        "Format",
        "What shape it comes in.",
        (
            ("Film", "Watched in one sitting.",
             ("Feature film", "Short film", "Documentary feature", "Animated feature")),
            ("Series", "Episodes and seasons.",
             ("Ongoing series", "Limited series", "Docuseries", "Anthology series", "Anime series",
              "Reality series")),
            ("Special", "One-off events.", ("Stand-up special", "Concert film", "Holiday special")),
            ("Merchandise", "Products from the shop.",
             ("Apparel", "Collectibles", "Books", "Music and vinyl", "Home and living",
              "Games and puzzles")),
        ),
    ),
    (
        "Setting",
        "Where and when it takes place.",
        (
            ("Era", "When.",
             ("Ancient world", "Medieval", "Renaissance", "Victorian", "1920s", "1950s", "1960s",
              "1980s", "1990s", "Present day", "Near future", "Far future")),
            ("Place", "Where.",
             ("Big city", "Small town", "Countryside", "Outer space", "High seas", "Desert",
              "Jungle", "Arctic", "Suburbia", "School", "Hospital", "Courtroom")),
            ("Region", "Which part of the world.",
             ("Japan", "Korea", "Scandinavia", "Latin America", "American West", "British Isles",
              "Mediterranean", "India")),
        ),
    ),
)  # fmt: skip

# How a setting reads inside a sentence ("set in the 1980s", "set in a small town").
SETTING_PHRASES = {
    "Ancient world": "the ancient world", "Medieval": "medieval times", "Renaissance": "the Renaissance",
    "Victorian": "Victorian times", "1920s": "the 1920s", "1950s": "the 1950s", "1960s": "the 1960s",
    "1980s": "the 1980s", "1990s": "the 1990s", "Present day": "the present day",
    "Near future": "the near future", "Far future": "the far future", "Big city": "a big city",
    "Small town": "a small town", "Countryside": "the countryside", "Outer space": "outer space",
    "High seas": "the high seas", "Desert": "the desert", "Jungle": "the jungle", "Arctic": "the Arctic",
    "Suburbia": "suburbia", "School": "a school", "Hospital": "a hospital", "Courtroom": "a courtroom",
    "American West": "the American West", "British Isles": "the British Isles",
    "Mediterranean": "the Mediterranean",
}  # fmt: skip

FORMAT_NOUNS = {
    "Feature film": "feature film", "Short film": "short film", "Documentary feature": "documentary feature",
    "Animated feature": "animated feature", "Ongoing series": "ongoing series",
    "Limited series": "limited series", "Docuseries": "docuseries", "Anthology series": "anthology series",
    "Anime series": "anime series", "Reality series": "reality series",
    "Stand-up special": "stand-up special",
}  # fmt: skip


# --- Taste clusters ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Taste:
    name: str
    share: float  # share of the catalog and of the audience
    genres: dict[str, float]  # genre group or sub-genre name -> weight
    moods: tuple[str, ...]
    series_share: float
    audiences: tuple[str, ...]
    settings: tuple[str, ...]
    words: tuple[str, ...]  # title flavour
    year_scale: float = 8.0  # mean age of titles, in years


TASTES: tuple[Taste, ...] = (
    Taste("Adrenaline", 0.11,
           {"Action": 1.0, "Adventure": 0.7, "Survival thriller": 0.5, "Techno-thriller": 0.4},
           ("Exciting", "Thrilling", "Suspenseful", "Gritty"), 0.25,
           ("Adults", "Young adults", "Older teens"), ("Big city", "Desert", "High seas", "Present day"),
           ("Strike", "Protocol", "Velocity", "Siege", "Vendetta", "Extraction", "Outpost", "Warhead")),
    Taste("Anime", 0.08, {"Anime": 1.0, "Adult animation": 0.5, "Hand-drawn": 0.4},
           ("Exciting", "Whimsical", "Bittersweet", "Mind-bending"), 0.65,
           ("Older teens", "Young teens", "Young adults"), ("Japan", "School", "Far future", "Outer space"),
           ("Blade", "Spirit", "Academy", "Titan", "Ronin", "Sakura", "Frame", "Guardian")),
    Taste("Family", 0.1, {"Kids and family": 1.0, "Animation": 0.8, "Fairy tale": 0.6},
           ("Feel-good", "Playful", "Heartwarming", "Funny", "Whimsical"), 0.35,
           ("Preschoolers", "Ages 6-9", "Ages 10-12", "All ages", "Family movie night"),
           ("Countryside", "Small town", "Jungle", "Arctic"),
           ("Puppy", "Balloon", "Dragon", "Treehouse", "Adventure", "Friends", "Wish", "Rainbow")),
    Taste("Laughs", 0.1, {"Comedy": 1.0, "Romantic comedy": 0.3, "Competition": 0.2},
           ("Funny", "Quirky", "Feel-good", "Playful"), 0.45,
           ("Young adults", "Adults", "Older teens"), ("Suburbia", "Big city", "Small town", "Present day"),
           ("Roommates", "Wedding", "Disaster", "Office", "Weekend", "Neighbours", "Mess", "Party")),
    Taste("Crime and mystery", 0.1, {"Crime": 1.0, "Thriller": 0.8, "Investigative": 0.4},
           ("Suspenseful", "Mysterious", "Gritty", "Ominous", "Cynical"), 0.4,
           ("Adults", "Mature"), ("Big city", "Small town", "Scandinavia", "Courtroom"),
           ("Alibi", "Witness", "Motive", "Ransom", "Verdict", "Cold Case", "Informant", "Evidence")),
    Taste("Sci-fi and fantasy", 0.1, {"Science fiction": 1.0, "Fantasy": 0.8, "Isekai": 0.3},
           ("Mind-bending", "Exciting", "Thought-provoking", "Mysterious"), 0.4,
           ("Young adults", "Adults", "Older teens"),
           ("Outer space", "Far future", "Near future", "Medieval"),
           ("Orbit", "Nebula", "Signal", "Singularity", "Realm", "Throne", "Star", "Paradox")),
    Taste("Romance", 0.08, {"Romance": 1.0, "Romantic comedy": 0.7, "Family drama": 0.3, "Shojo": 0.3},
           ("Romantic", "Heartwarming", "Bittersweet", "Feel-good"), 0.35,
           ("Young adults", "Adults", "Older teens"), ("Big city", "Mediterranean", "Countryside", "Korea"),
           ("Promise", "Summer", "Letters", "Kiss", "Heart", "Vows", "Moonlight", "Serenade")),
    Taste("Prestige drama", 0.1, {"Drama": 1.0, "Political thriller": 0.4, "Biography": 0.3},
           ("Thought-provoking", "Tearjerker", "Bleak", "Inspiring", "Bittersweet"), 0.4,
           ("Adults", "Cinephiles", "Mature"), ("Big city", "Hospital", "Courtroom", "Present day"),
           ("Inheritance", "Testimony", "Ward", "Dynasty", "Campaign", "Legacy", "Reckoning", "Confession")),
    Taste("Horror", 0.06, {"Horror": 1.0, "Supernatural": 0.5, "Psychological thriller": 0.4},
           ("Scary", "Ominous", "Violent", "Suspenseful"), 0.25,
           ("Mature", "Adults", "Older teens"), ("Small town", "Countryside", "Suburbia", "Arctic"),
           ("Hollow", "Cellar", "Ritual", "Curse", "Haunting", "Woods", "Whispers", "Bones")),
    Taste("Documentary", 0.07, {"Documentary": 1.0, "Historical": 0.4, "Biography": 0.5},
           ("Thought-provoking", "Inspiring", "Nostalgic", "Mysterious"), 0.4,
           ("Adults", "All ages", "Cinephiles"), ("Present day", "Jungle", "Arctic", "India"),
           ("Planet", "Truth", "Record", "Ocean", "Machine", "Mountain", "Genius", "Chronicle")),
    Taste("Reality", 0.05, {"Reality": 1.0, "Food": 0.4, "Competition": 0.5},
           ("Funny", "Feel-good", "Exciting", "Playful"), 0.9,
           ("Young adults", "Adults", "Family movie night"), ("Present day", "Big city", "Mediterranean"),
           ("Kitchen", "Island", "Showdown", "Challenge", "Makeover", "Getaway", "Villa", "Bake")),
    Taste("Classic and period", 0.05, {"Western": 1.0, "Period drama": 0.8, "Period romance": 0.6,
                                         "Swashbuckler": 0.4},
           ("Nostalgic", "Bittersweet", "Gritty", "Romantic"), 0.25,
           ("Adults", "Cinephiles"), ("Victorian", "American West", "1920s", "1950s", "British Isles"),
           ("Frontier", "Ballroom", "Estate", "Saddle", "Duchess", "Gunslinger", "Manor", "Rider"),
           year_scale=28.0),
)  # fmt: skip

ADJECTIVES = (
    "Silent", "Crimson", "Broken", "Golden", "Last", "Hidden", "Wild", "Iron", "Midnight", "Distant",
    "Burning", "Frozen", "Lonely", "Secret", "Electric", "Velvet", "Restless", "Glass", "Paper",
    "Scarlet", "Forgotten", "Endless", "Quiet", "Savage", "Bright", "Little", "Lucky", "Northern",
    "Fallen", "Second",
)  # fmt: skip
NOUNS = (
    "Harbor", "Kingdom", "River", "Garden", "Empire", "Horizon", "Season", "Witness", "Frontier",
    "Crown", "Station", "Island", "Mirror", "Storm", "Lantern", "Compass", "Echo", "Circuit", "Canyon",
    "Comet", "Orchard", "Tide", "Citadel", "Ember", "Hours", "Road", "House", "Line", "Game", "Sky",
)  # fmt: skip
PLACES = (
    "Avalon", "Brightwater", "Kessler Bay", "Old Mercy", "Port Sable", "Redwood Hollow", "Saint Clare",
    "Vesper", "Windmere", "Zenith City", "Marlow", "Ashford", "Calder Falls", "New Tarrow", "Ostrava",
)  # fmt: skip
FIRST_NAMES = (
    "Maya", "Theo", "Ruby", "Elias", "Juno", "Oskar", "Ines", "Kenji", "Lola", "Nico", "Amara", "Felix",
    "Hana", "Mateo", "Zara", "Leon", "Priya", "Tomas", "Freya", "Omar", "Ada", "Rafael", "Mei", "Sven",
    "Chloe", "Diego", "Yara", "Arjun", "Nora", "Lucas",
)  # fmt: skip
LAST_NAMES = (
    "Silva", "Novak", "Tanaka", "Okafor", "Berg", "Moreau", "Kowalski", "Haddad", "Rossi", "Kim",
    "Lindqvist", "Mendes", "Patel", "Schmidt", "O'Brien", "Garcia", "Ivanova", "Nguyen", "Dubois",
    "Larsen", "Costa", "Yilmaz", "Fischer", "Reyes", "Sato",
)  # fmt: skip
OCCUPATIONS = (
    "detective", "nurse", "pilot", "chef", "teacher", "hacker", "lawyer", "farmer", "student",
    "journalist", "soldier", "thief", "astronaut", "musician", "surgeon", "mechanic", "priest",
    "boxer", "scientist", "diplomat", "painter", "bookseller", "fisherman", "dancer", "engineer",
)  # fmt: skip
INCITING = (
    "discovers a secret that could change everything", "returns home after twenty years away",
    "inherits a failing family business", "is drawn into a dangerous game",
    "receives a letter from someone long dead", "witnesses something no one will believe",
    "gets one last chance to set things right", "loses everything in a single night",
    "is recruited for an impossible mission", "falls for the one person who is off-limits",
    "finds a door that should not exist", "has to keep a promise made years ago",
    "takes a job that is too good to be true", "becomes the unlikely leader of a ragtag team",
    "wakes up with no memory of the past week", "must win a competition to save the family home",
)  # fmt: skip
MERCH = {
    "Apparel": (("Hoodie", 49), ("T-shirt", 24), ("Cap", 22), ("Scarf", 29)),
    "Collectibles": (
        ("Collector's figure", 59),
        ("Enamel pin set", 14),
        ("Replica prop", 89),
        ("Poster", 19),
    ),
    "Books": (("Art book", 39), ("Novelisation", 16), ("Graphic novel", 22)),
    "Music and vinyl": (("Soundtrack vinyl", 32), ("Soundtrack CD", 15)),
    "Home and living": (("Mug", 15), ("Blanket", 45), ("Cushion", 29)),
    "Games and puzzles": (("Board game", 42), ("1000-piece puzzle", 24), ("Card game", 18)),
}
COUNTRIES = (("US", 30), ("GB", 10), ("DE", 8), ("FR", 7), ("BR", 7), ("IN", 7), ("ES", 5), ("MX", 5),
              ("CA", 5), ("JP", 4), ("AU", 4), ("NL", 3), ("SE", 3), ("KR", 2))  # fmt: skip
SEARCH_TYPOS = ("comdy", "anmie", "thriler", "documentry", "romcom", "scifi", "horor", "westren")
