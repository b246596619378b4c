"""Many gamews instances for one game: an origin holds the game links and publishes
through Redis Streams; edges serve browsers from the stream (docs/operator.md, "Many instances")."""
