"""Lightning callbacks configured under ``callbacks:`` (conf/callbacks/)."""
