//! PLACEHOLDER (helper "sql" implements it): SQL templating.

/// `SELECT * FROM t WHERE id = 42 AND n IN (1,2,3)` -> `SELECT * FROM t WHERE id = ? AND n IN (?)`.
pub fn template(sql: &str) -> String {
    sql.to_string()
}

/// The statement's verb, upper-cased: `SELECT`, `INSERT`, `BEGIN`...
pub fn verb(sql: &str) -> String {
    sql.split_whitespace().next().unwrap_or("").to_ascii_uppercase()
}
