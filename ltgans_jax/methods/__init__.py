"""The lifelong methods behind one interface (``base.LifelongMethod``), by name (``registry``)."""
