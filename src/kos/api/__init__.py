"""The kos API: types, validation, names, the resource table and the error tree. Pure data and rules, no I/O."""
