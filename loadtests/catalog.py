"""Well-known films for load-test payloads: title, year and genres (MovieLens genre names).

Load-test traffic should look like a ranker's: real titles of realistic length, overlapping
genres (so the prompt's shared-genre evidence has something to find), a spread of decades.
The item ids are this catalogue's own (`lt-NNN`), not MovieLens ids: the service treats
history and items as content, and unknown item ids are normal for it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Film:
    item_id: str
    title: str
    year: int
    genres: tuple[str, ...]

    @property
    def display_title(self) -> str:
        """MovieLens style: "Title (Year)"."""
        return f"{self.title} ({self.year})"


_FILMS: tuple[tuple[str, int, tuple[str, ...]], ...] = (
    ("Star Wars", 1977, ("Action", "Adventure", "Sci-Fi")),
    ("The Empire Strikes Back", 1980, ("Action", "Adventure", "Sci-Fi")),
    ("E.T. the Extra-Terrestrial", 1982, ("Children", "Drama", "Fantasy", "Sci-Fi")),
    ("Back to the Future", 1985, ("Comedy", "Sci-Fi")),
    ("Raiders of the Lost Ark", 1981, ("Action", "Adventure")),
    ("Jaws", 1975, ("Action", "Horror")),
    ("Jurassic Park", 1993, ("Action", "Adventure", "Sci-Fi")),
    ("The Terminator", 1984, ("Action", "Sci-Fi", "Thriller")),
    ("Terminator 2: Judgment Day", 1991, ("Action", "Sci-Fi", "Thriller")),
    ("Alien", 1979, ("Horror", "Sci-Fi", "Thriller")),
    ("Aliens", 1986, ("Action", "Sci-Fi", "Thriller", "War")),
    ("Blade Runner", 1982, ("Film-Noir", "Sci-Fi")),
    ("2001: A Space Odyssey", 1968, ("Drama", "Mystery", "Sci-Fi")),
    ("The Matrix", 1999, ("Action", "Sci-Fi", "Thriller")),
    ("The Godfather", 1972, ("Action", "Crime", "Drama")),
    ("The Godfather: Part II", 1974, ("Action", "Crime", "Drama")),
    ("Goodfellas", 1990, ("Crime", "Drama")),
    ("Pulp Fiction", 1994, ("Crime", "Drama")),
    ("Reservoir Dogs", 1992, ("Crime", "Thriller")),
    ("Fargo", 1996, ("Crime", "Drama", "Thriller")),
    ("The Silence of the Lambs", 1991, ("Drama", "Thriller")),
    ("Se7en", 1995, ("Crime", "Thriller")),
    ("The Usual Suspects", 1995, ("Crime", "Thriller")),
    ("Psycho", 1960, ("Horror", "Thriller")),
    ("Vertigo", 1958, ("Mystery", "Thriller")),
    ("Rear Window", 1954, ("Mystery", "Thriller")),
    ("North by Northwest", 1959, ("Drama", "Thriller")),
    ("Casablanca", 1942, ("Drama", "Romance", "War")),
    ("Citizen Kane", 1941, ("Drama",)),
    ("Chinatown", 1974, ("Film-Noir", "Mystery", "Thriller")),
    ("The Shawshank Redemption", 1994, ("Drama",)),
    ("Schindler's List", 1993, ("Drama", "War")),
    ("Saving Private Ryan", 1998, ("Action", "Drama", "War")),
    ("Apocalypse Now", 1979, ("Drama", "War")),
    ("Platoon", 1986, ("Drama", "War")),
    ("Forrest Gump", 1994, ("Comedy", "Romance", "War")),
    ("Titanic", 1997, ("Drama", "Romance")),
    ("When Harry Met Sally...", 1989, ("Comedy", "Romance")),
    ("Annie Hall", 1977, ("Comedy", "Romance")),
    ("Groundhog Day", 1993, ("Comedy", "Romance")),
    ("Some Like It Hot", 1959, ("Comedy", "Crime")),
    ("Dr. Strangelove", 1964, ("Comedy", "Sci-Fi", "War")),
    ("Monty Python and the Holy Grail", 1975, ("Comedy",)),
    ("The Princess Bride", 1987, ("Action", "Adventure", "Comedy", "Romance")),
    ("Ghostbusters", 1984, ("Comedy", "Horror")),
    ("Toy Story", 1995, ("Animation", "Children", "Comedy")),
    ("The Lion King", 1994, ("Animation", "Children", "Musical")),
    ("Beauty and the Beast", 1991, ("Animation", "Children", "Musical")),
    ("Aladdin", 1992, ("Animation", "Children", "Comedy", "Musical")),
    ("Snow White and the Seven Dwarfs", 1937, ("Animation", "Children", "Musical")),
    ("The Wizard of Oz", 1939, ("Adventure", "Children", "Drama", "Musical")),
    ("Mary Poppins", 1964, ("Children", "Comedy", "Musical")),
    ("The Sound of Music", 1965, ("Musical",)),
    ("Singin' in the Rain", 1952, ("Musical", "Romance")),
    ("The Good, the Bad and the Ugly", 1966, ("Action", "Western")),
    ("Unforgiven", 1992, ("Western",)),
    ("Butch Cassidy and the Sundance Kid", 1969, ("Action", "Comedy", "Western")),
    ("The Shining", 1980, ("Horror",)),
    ("The Exorcist", 1973, ("Horror",)),
    ("Lawrence of Arabia", 1962, ("Adventure", "War")),
    ("The Sixth Sense", 1999, ("Thriller",)),
    ("Fight Club", 1999, ("Drama",)),
    ("American Beauty", 1999, ("Comedy", "Drama")),
)

CATALOG: tuple[Film, ...] = tuple(
    Film(item_id=f"lt-{i:03d}", title=title, year=year, genres=genres)
    for i, (title, year, genres) in enumerate(_FILMS, start=1)
)
