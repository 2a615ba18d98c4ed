// Database spec schemas, defaults and validation (filled by the databases work).
export {}
