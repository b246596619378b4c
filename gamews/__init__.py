"""gamews: a Twisted service that lets game servers talk live with web browsers."""
