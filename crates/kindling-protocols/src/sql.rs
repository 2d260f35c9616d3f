//! SQL templating: turn a statement into a bounded-cardinality endpoint.
//!
//! A small lexer (quotes with escapes, dollar-quoted strings, backticks,
//! `--`, `#` and `/* */` comments) feeds a few rewrites:
//! - string, numeric, hex, bit and boolean literals become `?` (a sign in
//!   front of a number is folded into it); `NULL` stays;
//! - placeholders (`?`, `$1`, `:name`, `@var`) stay as written;
//! - `IN (...)` lists of literals/placeholders (or of such tuples) collapse to
//!   their first item: `IN (?)`, `IN ((?, ?))`; `ARRAY[1, 2]` to `ARRAY[?]`;
//! - `VALUES (...), (...), ...` keeps only its first row;
//! - names of savepoints, prepared statements and cursors (which clients often
//!   number per use) become `?`;
//! - comments are dropped and whitespace runs collapse to one space (no
//!   whitespace stays no whitespace), trailing `;` are dropped;
//! - reserved words are upper-cased (`select` and `SELECT` give one
//!   template); identifiers, quoted or not, keep their spelling;
//! - the result is cut to [`MAX_TEMPLATE`] bytes.
//!
//! Literals never leak into a template, even from a statement cut short at the
//! snaplen: an unterminated quote is a literal up to the end.

/// Longest template kept (bytes, plus an ellipsis when cut).
pub const MAX_TEMPLATE: usize = 200;

/// The statement text we look at; heads are at most 4 KiB, this only guards
/// direct callers.
const MAX_INPUT: usize = 64 * 1024;

/// Lexical rules that differ between servers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// Unknown server: `"..."` is an identifier, backslash escapes in strings,
    /// `#` starts a comment only when followed by a space.
    Generic,
    /// `"..."` identifiers, `E'...'` escapes, `$tag$` strings, nested comments,
    /// `#` and `@` are operators.
    Postgres,
    /// `"..."` strings, backslash escapes, `#` comments, `/*! ... */` code.
    Mysql,
}

/// `SELECT * FROM t WHERE id = 42 AND n IN (1,2,3)` -> `SELECT * FROM t WHERE id = ? AND n IN (?)`.
pub fn template(sql: &str) -> String {
    template_with(sql, Dialect::Generic)
}

/// [`template`] with the lexical rules of one server.
pub fn template_with(sql: &str, dialect: Dialect) -> String {
    let toks: Vec<Token<'_>> = Lexer::new(clip(sql), dialect).collect();
    let toks = fold_signs(toks);
    let toks = mark_keywords(toks);
    let toks = anonymise_names(toks);
    let toks = collapse_lists(toks);
    let toks = strip_trailing_semicolons(toks);
    crate::truncate_display(&render(&toks), MAX_TEMPLATE)
}

/// The statement's verb, upper-cased: `SELECT`, `INSERT`, `BEGIN`... Leading
/// comments and parentheses are skipped. For `WITH` the verb of the main
/// statement after the common table expressions is returned (`WITH x AS
/// (...) UPDATE ...` -> `UPDATE`), or `WITH` if it cannot be seen. Empty when
/// the text does not start with a word.
pub fn verb(sql: &str) -> String {
    let mut lexer = Lexer::new(clip(sql), Dialect::Generic);
    let first = loop {
        match lexer.next() {
            Some(Token { kind: Kind::Punct("("), .. }) => continue,
            Some(Token { kind: Kind::Word(w), .. }) => break w,
            _ => return String::new(),
        }
    };
    if !plausible_verb(first) {
        return String::new();
    }
    let upper = first.to_ascii_uppercase();
    if upper == "WITH" {
        return main_verb_after_cte(lexer).unwrap_or(upper);
    }
    upper
}

/// Keeps method values bounded: a verb is a short ASCII word.
fn plausible_verb(w: &str) -> bool {
    !w.is_empty() && w.len() <= 24 && w.bytes().all(|b| b.is_ascii_alphabetic() || b == b'_')
}

/// The first statement keyword at parenthesis depth 0 after `WITH ...`.
fn main_verb_after_cte(lexer: Lexer<'_>) -> Option<String> {
    const MAIN: [&str; 8] = ["SELECT", "INSERT", "UPDATE", "DELETE", "MERGE", "VALUES", "TABLE", "REPLACE"];
    let mut depth = 0usize;
    for tok in lexer {
        match tok.kind {
            Kind::Punct("(") => depth += 1,
            Kind::Punct(")") => depth = depth.saturating_sub(1),
            Kind::Word(w) if depth == 0 => {
                if let Some(v) = MAIN.iter().find(|v| v.eq_ignore_ascii_case(w)) {
                    return Some((*v).to_string());
                }
            }
            _ => {}
        }
    }
    None
}

fn clip(sql: &str) -> &str {
    if sql.len() <= MAX_INPUT {
        return sql;
    }
    let mut end = MAX_INPUT;
    while !sql.is_char_boundary(end) {
        end -= 1;
    }
    &sql[..end]
}

// ---------------------------------------------------------------------------
// Lexer

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind<'a> {
    /// Identifier or keyword, as written.
    Word(&'a str),
    /// A word known to be a reserved keyword (rendered upper-cased).
    Keyword(&'a str),
    /// Quoted identifier, kept verbatim with its quotes.
    Quoted(&'a str),
    /// Any literal: rendered `?`.
    Literal,
    /// Placeholder or variable, kept verbatim.
    Param(&'a str),
    /// Operator or punctuation.
    Punct(&'a str),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Token<'a> {
    kind: Kind<'a>,
    /// Whitespace or a comment came before it.
    space: bool,
}

struct Lexer<'a> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
    dialect: Dialect,
    /// Open MySQL `/*! ... */` sections whose content is code.
    exec_comments: usize,
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c >= 0x80
}

fn is_ident_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80
}

const OPERATOR_CHARS: &[u8] = b"+-*/<>=~!%^&|#@";

impl<'a> Lexer<'a> {
    fn new(s: &'a str, dialect: Dialect) -> Self {
        Lexer { s, b: s.as_bytes(), i: 0, dialect, exec_comments: 0 }
    }

    fn peek(&self, off: usize) -> u8 {
        self.b.get(self.i + off).copied().unwrap_or(0)
    }

    /// Skips whitespace and comments; true if anything was skipped.
    fn skip_space(&mut self) -> bool {
        let start = self.i;
        while self.i < self.b.len() {
            let c = self.b[self.i];
            if c.is_ascii_whitespace() || c == 0 || c.is_ascii_control() {
                self.i += 1;
            } else if (c == b'-' && self.peek(1) == b'-') || (c == b'#' && self.hash_is_comment()) {
                self.skip_line();
            } else if c == b'/' && self.peek(1) == b'*' {
                if self.dialect != Dialect::Postgres && self.peek(2) == b'!' {
                    // MySQL executable comment: its content is code.
                    self.i += 3;
                    while self.i < self.b.len() && self.b[self.i].is_ascii_digit() {
                        self.i += 1;
                    }
                    self.exec_comments += 1;
                } else {
                    self.skip_block_comment();
                }
            } else if c == b'*' && self.peek(1) == b'/' && self.exec_comments > 0 {
                self.exec_comments -= 1;
                self.i += 2;
            } else {
                break;
            }
        }
        self.i > start
    }

    fn hash_is_comment(&self) -> bool {
        match self.dialect {
            Dialect::Mysql => true,
            Dialect::Postgres => false,
            Dialect::Generic => matches!(self.peek(1), 0 | b' ' | b'\t' | b'\r' | b'\n'),
        }
    }

    fn skip_line(&mut self) {
        while self.i < self.b.len() && self.b[self.i] != b'\n' {
            self.i += 1;
        }
    }

    fn skip_block_comment(&mut self) {
        let nested = self.dialect == Dialect::Postgres;
        let mut depth = 0usize;
        while self.i < self.b.len() {
            if self.b[self.i] == b'/' && self.peek(1) == b'*' {
                if depth == 0 || nested {
                    depth += 1;
                }
                self.i += 2;
            } else if self.b[self.i] == b'*' && self.peek(1) == b'/' {
                depth = depth.saturating_sub(1);
                self.i += 2;
                if depth == 0 {
                    return;
                }
            } else {
                self.i += 1;
            }
        }
    }

    /// Consumes a quoted run starting at the opening quote; doubled quotes and
    /// (when `backslash`) backslash escapes stay inside.
    fn skip_quoted(&mut self, q: u8, backslash: bool) {
        self.i += 1;
        while self.i < self.b.len() {
            let c = self.b[self.i];
            if backslash && c == b'\\' {
                self.i += 2;
            } else if c == q {
                if self.peek(1) == q {
                    self.i += 2;
                } else {
                    self.i += 1;
                    return;
                }
            } else {
                self.i += 1;
            }
        }
        self.i = self.b.len();
    }

    fn backslash_strings(&self) -> bool {
        self.dialect != Dialect::Postgres
    }

    /// `$1` parameter, `$tag$...$tag$` string, or `None` (a lone `$`).
    fn dollar(&mut self) -> Option<Kind<'a>> {
        let start = self.i;
        if self.peek(1).is_ascii_digit() {
            self.i += 1;
            while self.i < self.b.len() && self.b[self.i].is_ascii_digit() {
                self.i += 1;
            }
            return Some(Kind::Param(&self.s[start..self.i]));
        }
        let mut j = self.i + 1;
        while j < self.b.len() && (self.b[j].is_ascii_alphanumeric() || self.b[j] == b'_') {
            j += 1;
        }
        if self.b.get(j) != Some(&b'$') {
            return None;
        }
        let tag = &self.b[start..=j];
        let body = j + 1;
        let end = find(&self.b[body..], tag).map_or(self.b.len(), |p| body + p + tag.len());
        self.i = end;
        Some(Kind::Literal)
    }

    fn number(&mut self) -> Kind<'a> {
        let start = self.i;
        let b = self.b;
        if b[self.i] == b'0' && matches!(self.peek(1), b'x' | b'X' | b'b' | b'B' | b'o' | b'O') {
            self.i += 2;
            while self.i < b.len() && (b[self.i].is_ascii_alphanumeric() || b[self.i] == b'_') {
                self.i += 1;
            }
            return Kind::Literal;
        }
        let digits = |i: &mut usize| {
            while *i < b.len() && (b[*i].is_ascii_digit() || b[*i] == b'_') {
                *i += 1;
            }
        };
        digits(&mut self.i);
        if self.peek(0) == b'.' {
            self.i += 1;
            digits(&mut self.i);
        }
        if matches!(self.peek(0), b'e' | b'E')
            && (self.peek(1).is_ascii_digit()
                || (matches!(self.peek(1), b'+' | b'-') && self.peek(2).is_ascii_digit()))
        {
            self.i += 2;
            digits(&mut self.i);
        }
        if self.i < b.len() && is_ident_start(b[self.i]) && b[start] != b'.' {
            // MySQL allows identifiers that start with digits (`1st_table`).
            while self.i < b.len() && is_ident_char(b[self.i]) {
                self.i += 1;
            }
            return Kind::Word(&self.s[start..self.i]);
        }
        Kind::Literal
    }

    fn word(&mut self) -> Kind<'a> {
        let start = self.i;
        while self.i < self.b.len() && is_ident_char(self.b[self.i]) {
            self.i += 1;
        }
        let w = &self.s[start..self.i];
        if self.peek(0) == b'\'' && self.literal_prefix(w) {
            let backslash = self.backslash_strings() || w.eq_ignore_ascii_case("e");
            self.skip_quoted(b'\'', backslash);
            return Kind::Literal;
        }
        if w.eq_ignore_ascii_case("u") && self.peek(0) == b'&' && self.peek(1) == b'\'' {
            self.i += 1;
            self.skip_quoted(b'\'', false);
            return Kind::Literal;
        }
        if w.eq_ignore_ascii_case("true") || w.eq_ignore_ascii_case("false") {
            return Kind::Literal;
        }
        Kind::Word(w)
    }

    /// `E'..'`, `N'..'`, `X'..'`, `B'..'` and MySQL charset introducers
    /// (`_utf8mb4'..'`).
    fn literal_prefix(&self, w: &str) -> bool {
        matches!(w, "e" | "E" | "n" | "N" | "x" | "X" | "b" | "B")
            || (w.starts_with('_') && w.len() > 1 && self.dialect != Dialect::Postgres)
    }

    fn operator(&mut self) -> Kind<'a> {
        let start = self.i;
        while self.i < self.b.len() && OPERATOR_CHARS.contains(&self.b[self.i]) {
            let c = self.b[self.i];
            let next = self.peek(1);
            let comment = (c == b'-' && next == b'-') || (c == b'/' && next == b'*');
            if self.i > start && (comment || (c == b'#' && self.hash_is_comment())) {
                break;
            }
            if c == b'*' && next == b'/' && self.exec_comments > 0 && self.i > start {
                break;
            }
            self.i += 1;
        }
        if self.i == start {
            self.i += 1;
        }
        // Like PostgreSQL: `=-` is `=` then `-` unless the run holds an
        // operator-only character.
        let run = &self.b[start..self.i];
        if run.len() > 1 && !run.iter().any(|c| b"~!@#%^&|".contains(c)) {
            let mut end = self.i;
            while end - start > 1 && matches!(self.b[end - 1], b'+' | b'-') {
                end -= 1;
            }
            self.i = end;
        }
        Kind::Punct(&self.s[start..self.i])
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

impl<'a> Iterator for Lexer<'a> {
    type Item = Token<'a>;

    fn next(&mut self) -> Option<Token<'a>> {
        let space = self.skip_space();
        if self.i >= self.b.len() {
            return None;
        }
        let c = self.b[self.i];
        let start = self.i;
        let kind = match c {
            b'\'' => {
                self.skip_quoted(b'\'', self.backslash_strings());
                Kind::Literal
            }
            b'"' if self.dialect == Dialect::Mysql => {
                self.skip_quoted(b'"', true);
                Kind::Literal
            }
            b'"' | b'`' => {
                self.skip_quoted(c, false);
                Kind::Quoted(&self.s[start..self.i])
            }
            b'$' => match self.dollar() {
                Some(k) => k,
                None => {
                    self.i += 1;
                    Kind::Punct("$")
                }
            },
            b'?' => {
                self.i += 1;
                Kind::Param("?")
            }
            b':' => self.colon(),
            b'@' if self.dialect != Dialect::Postgres
                && (self.peek(1) == b'@' || is_ident_start(self.peek(1)) || self.peek(1) == b'`') =>
            {
                self.variable()
            }
            b'0'..=b'9' => self.number(),
            b'.' if self.peek(1).is_ascii_digit() && !self.after_name(start) => self.number(),
            _ if is_ident_start(c) => self.word(),
            _ if OPERATOR_CHARS.contains(&c) => self.operator(),
            _ => {
                self.i += 1;
                Kind::Punct(&self.s[start..self.i])
            }
        };
        Some(Token { kind, space })
    }
}

impl<'a> Lexer<'a> {
    /// `t.1col` is a qualified name, not `t` followed by `.1`.
    fn after_name(&self, at: usize) -> bool {
        at > 0 && (is_ident_char(self.b[at - 1]) || matches!(self.b[at - 1], b'"' | b'`'))
    }

    fn colon(&mut self) -> Kind<'a> {
        let start = self.i;
        if self.peek(1) == b':' {
            self.i += 2;
            return Kind::Punct("::");
        }
        if is_ident_start(self.peek(1)) {
            self.i += 1;
            while self.i < self.b.len() && is_ident_char(self.b[self.i]) {
                self.i += 1;
            }
            return Kind::Param(&self.s[start..self.i]);
        }
        self.i += 1;
        Kind::Punct(":")
    }

    /// MySQL `@var`, `@@session.sql_mode`, `@`quoted``.
    fn variable(&mut self) -> Kind<'a> {
        let start = self.i;
        while self.peek(0) == b'@' {
            self.i += 1;
        }
        if self.peek(0) == b'`' {
            self.skip_quoted(b'`', false);
        } else {
            while self.i < self.b.len() && (is_ident_char(self.b[self.i]) || self.b[self.i] == b'.') {
                self.i += 1;
            }
        }
        Kind::Param(&self.s[start..self.i])
    }
}

// ---------------------------------------------------------------------------
// Rewrites

fn is_punct(t: Option<&Token<'_>>, p: &str) -> bool {
    matches!(t, Some(Token { kind: Kind::Punct(x), .. }) if *x == p)
}

/// Where a `+`/`-` can only be a sign: after an operator, `(`, `,` or a
/// keyword, or at the start.
fn expects_operand(prev: Option<&Token<'_>>) -> bool {
    match prev.map(|t| t.kind) {
        None => true,
        Some(Kind::Punct(p)) => p != ")" && p != "]",
        Some(Kind::Word(w)) => is_reserved(w),
        Some(Kind::Keyword(_)) => true,
        _ => false,
    }
}

/// `-5` after an operator is one literal.
fn fold_signs(toks: Vec<Token<'_>>) -> Vec<Token<'_>> {
    let mut out: Vec<Token<'_>> = Vec::with_capacity(toks.len());
    for t in toks {
        if t.kind == Kind::Literal && !t.space {
            let n = out.len();
            if n >= 1 && (is_punct(out.last(), "-") || is_punct(out.last(), "+")) {
                let before = if n >= 2 { out.get(n - 2) } else { None };
                if expects_operand(before) {
                    let sign = out.pop().map_or(t.space, |s| s.space);
                    out.push(Token { kind: Kind::Literal, space: sign });
                    continue;
                }
            }
        }
        out.push(t);
    }
    out
}

fn mark_keywords(mut toks: Vec<Token<'_>>) -> Vec<Token<'_>> {
    for i in 0..toks.len() {
        let Kind::Word(w) = toks[i].kind else { continue };
        let qualified = (i > 0 && is_punct(toks.get(i - 1), ".")) || is_punct(toks.get(i + 1), ".");
        if !qualified && is_reserved(w) {
            toks[i].kind = Kind::Keyword(w);
        }
    }
    toks
}

/// Savepoint, prepared statement and cursor names are often generated per
/// use (`sa_savepoint_12`, `pdo_stmt_0000002a`): replace them with `?`.
fn anonymise_names(mut toks: Vec<Token<'_>>) -> Vec<Token<'_>> {
    const NAMED: [&str; 7] = ["SAVEPOINT", "RELEASE", "PREPARE", "EXECUTE", "DEALLOCATE", "DECLARE", "CLOSE"];
    let mut start = 0;
    while start < toks.len() {
        let end =
            toks[start..].iter().position(|t| t.kind == Kind::Punct(";")).map_or(toks.len(), |p| start + p);
        let stmt = &toks[start..end];
        let name_at = if NAMED.iter().any(|v| word_is(stmt.first(), v)) {
            Some(1)
        } else if word_is(stmt.first(), "ROLLBACK") {
            stmt.iter().position(|t| word_is(Some(t), "TO")).map(|p| p + 1)
        } else if word_is(stmt.first(), "FETCH") || word_is(stmt.first(), "MOVE") {
            stmt.iter().rposition(|t| word_is(Some(t), "FROM") || word_is(Some(t), "IN")).map(|p| p + 1)
        } else {
            None
        };
        if let Some(mut j) = name_at.map(|n| start + n) {
            const SKIP: [&str; 5] = ["SAVEPOINT", "PREPARE", "ALL", "WORK", "TRANSACTION"];
            while j < end && SKIP.iter().any(|s| word_is(toks.get(j), s)) {
                j += 1;
            }
            if j < end && matches!(toks[j].kind, Kind::Word(_) | Kind::Quoted(_)) {
                toks[j].kind = Kind::Literal;
            }
        }
        start = end + 1;
    }
    toks
}

/// A word or keyword equal to `w`, ignoring case.
fn word_is(t: Option<&Token<'_>>, w: &str) -> bool {
    matches!(t.map(|t| t.kind), Some(Kind::Word(x) | Kind::Keyword(x)) if x.eq_ignore_ascii_case(w))
}

/// Index just past the bracket group opening at `open`, if it closes.
fn group_end(toks: &[Token<'_>], open: usize) -> Option<usize> {
    let (o, c) = match toks.get(open)?.kind {
        Kind::Punct("(") => ("(", ")"),
        Kind::Punct("[") => ("[", "]"),
        _ => return None,
    };
    let mut depth = 0usize;
    for (j, t) in toks.iter().enumerate().skip(open) {
        if t.kind == Kind::Punct(o) {
            depth += 1;
        } else if t.kind == Kind::Punct(c) {
            depth -= 1;
            if depth == 0 {
                return Some(j + 1);
            }
        }
    }
    None
}

fn is_value(t: &Token<'_>) -> bool {
    matches!(t.kind, Kind::Literal | Kind::Param(_))
        || matches!(t.kind, Kind::Keyword(k) if k.eq_ignore_ascii_case("NULL"))
}

/// Splits a bracket group's inside at top-level commas into items that are
/// each a value or a bracketed tuple of values; `None` otherwise.
fn value_items(inner: &[Token<'_>]) -> Option<Vec<(usize, usize)>> {
    let mut items = Vec::new();
    let mut i = 0;
    while i < inner.len() {
        let end = if is_value(&inner[i]) {
            i + 1
        } else if is_punct(inner.get(i), "(") {
            let e = group_end(inner, i)?;
            if !inner[i + 1..e - 1].iter().all(|t| is_value(t) || t.kind == Kind::Punct(",")) {
                return None;
            }
            e
        } else {
            return None;
        };
        items.push((i, end));
        match inner.get(end) {
            None => break,
            Some(t) if t.kind == Kind::Punct(",") && end + 1 < inner.len() => i = end + 1,
            _ => return None,
        }
    }
    (!items.is_empty()).then_some(items)
}

/// `IN (1, 2, 3)` -> `IN (?)`, `ARRAY[1, 2]` -> `ARRAY[?]`, and `VALUES` row
/// lists -> their first row.
fn collapse_lists(toks: Vec<Token<'_>>) -> Vec<Token<'_>> {
    let mut out: Vec<Token<'_>> = Vec::with_capacity(toks.len());
    let mut i = 0;
    while i < toks.len() {
        let t = toks[i];
        out.push(t);
        i += 1;
        let list_head = matches!(t.kind, Kind::Keyword(k) if k.eq_ignore_ascii_case("IN"))
            || matches!(t.kind, Kind::Word(w) | Kind::Keyword(w) if w.eq_ignore_ascii_case("ARRAY"));
        if list_head {
            if group_end(&toks, i).is_none() && unterminated_value_list(&toks[i..]) {
                // A list cut by the snaplen: keep its first value only.
                out.push(toks[i]);
                out.push(Token { space: false, ..toks[i + 1] });
                break;
            }
            if let Some(end) = group_end(&toks, i) {
                if let Some(items) = value_items(&toks[i + 1..end - 1]) {
                    let (a, b) = items[0];
                    out.push(toks[i]);
                    let first = &toks[i + 1 + a..i + 1 + b];
                    out.extend(
                        first.iter().enumerate().map(|(k, x)| Token { space: k > 0 && x.space, ..*x }),
                    );
                    out.push(Token { space: false, ..toks[end - 1] });
                    i = end;
                }
            }
        } else if word_is(Some(&t), "VALUES") || word_is(Some(&t), "VALUE") {
            i = keep_first_row(&toks, i, &mut out);
        }
    }
    out
}

/// `(1, 2, 3` running to the end of the text.
fn unterminated_value_list(rest: &[Token<'_>]) -> bool {
    rest.len() >= 2
        && matches!(rest[0].kind, Kind::Punct("(") | Kind::Punct("["))
        && is_value(&rest[1])
        && rest[2..].iter().all(|t| is_value(t) || t.kind == Kind::Punct(","))
}

/// Copies the first `(row)` (or `ROW(row)`) at `i` and skips the `, (row)`
/// that follow; returns where to go on.
fn keep_first_row<'a>(toks: &[Token<'a>], mut i: usize, out: &mut Vec<Token<'a>>) -> usize {
    let row_at = |j: usize| -> Option<(usize, usize)> {
        let open = if matches!(toks.get(j).map(|t| t.kind), Some(Kind::Word(w)) if w.eq_ignore_ascii_case("ROW"))
        {
            j + 1
        } else {
            j
        };
        group_end(toks, open).map(|e| (open, e))
    };
    let Some((_, end)) = row_at(i) else { return i };
    out.extend_from_slice(&toks[i..end]);
    i = end;
    while is_punct(toks.get(i), ",") {
        match row_at(i + 1) {
            Some((_, e)) => i = e,
            None if i + 1 < toks.len() && matches!(toks[i + 1].kind, Kind::Punct("(")) => {
                // A row cut short by the snaplen: drop the rest.
                return toks.len();
            }
            None => break,
        }
    }
    i
}

fn strip_trailing_semicolons(mut toks: Vec<Token<'_>>) -> Vec<Token<'_>> {
    while toks.last().is_some_and(|t| t.kind == Kind::Punct(";")) {
        toks.pop();
    }
    toks
}

fn render(toks: &[Token<'_>]) -> String {
    let mut s = String::new();
    for t in toks {
        if t.space && !s.is_empty() {
            s.push(' ');
        }
        match t.kind {
            Kind::Keyword(w) => s.extend(w.chars().map(|c| c.to_ascii_uppercase())),
            Kind::Word(w) | Kind::Quoted(w) | Kind::Param(w) | Kind::Punct(w) => s.push_str(w),
            Kind::Literal => s.push('?'),
        }
        if s.len() > MAX_TEMPLATE * 2 {
            break;
        }
    }
    s
}

/// Reserved words of PostgreSQL and MySQL (and statement verbs) that are
/// upper-cased in templates. Words commonly used as column names (`name`,
/// `key`, `value`, `type`, `status`...) are deliberately absent.
const RESERVED: &[&str] = &[
    "ABORT",
    "ALL",
    "ALTER",
    "ANALYZE",
    "AND",
    "ANY",
    "AS",
    "ASC",
    "BEGIN",
    "BETWEEN",
    "BOTH",
    "BY",
    "CALL",
    "CASCADE",
    "CASE",
    "CAST",
    "CHECK",
    "CLOSE",
    "COLLATE",
    "COLUMN",
    "COMMIT",
    "CONFLICT",
    "CONSTRAINT",
    "COPY",
    "CREATE",
    "CROSS",
    "CURRENT_DATE",
    "CURRENT_TIME",
    "CURRENT_TIMESTAMP",
    "CURRENT_USER",
    "DATABASE",
    "DEALLOCATE",
    "DECLARE",
    "DEFAULT",
    "DELETE",
    "DESC",
    "DESCRIBE",
    "DISTINCT",
    "DO",
    "DROP",
    "DUPLICATE",
    "ELSE",
    "END",
    "EXCEPT",
    "EXECUTE",
    "EXISTS",
    "EXPLAIN",
    "FALSE",
    "FETCH",
    "FOR",
    "FOREIGN",
    "FROM",
    "FULL",
    "GRANT",
    "GROUP",
    "HAVING",
    "IF",
    "IGNORE",
    "ILIKE",
    "IN",
    "INDEX",
    "INFILE",
    "INNER",
    "INSERT",
    "INTERSECT",
    "INTO",
    "IS",
    "ISNULL",
    "JOIN",
    "LATERAL",
    "LEADING",
    "LEFT",
    "LIKE",
    "LIMIT",
    "LOAD",
    "LOCK",
    "MERGE",
    "NATURAL",
    "NOT",
    "NOTHING",
    "NOTNULL",
    "NOWAIT",
    "NULL",
    "OFFSET",
    "ON",
    "ONLY",
    "OR",
    "ORDER",
    "OUTER",
    "OVER",
    "PARTITION",
    "PREPARE",
    "PRIMARY",
    "RECURSIVE",
    "REFERENCES",
    "RELEASE",
    "RENAME",
    "REPLACE",
    "RETURNING",
    "REVOKE",
    "RIGHT",
    "ROLLBACK",
    "SAVEPOINT",
    "SCHEMA",
    "SELECT",
    "SET",
    "SHOW",
    "SIMILAR",
    "START",
    "STRAIGHT_JOIN",
    "TABLE",
    "THEN",
    "TO",
    "TRAILING",
    "TRANSACTION",
    "TRUE",
    "TRUNCATE",
    "UNION",
    "UNIQUE",
    "UPDATE",
    "USE",
    "USING",
    "VACUUM",
    "VALUES",
    "WHEN",
    "WHERE",
    "WINDOW",
    "WITH",
];

fn is_reserved(w: &str) -> bool {
    if w.len() > 20 || !w.is_ascii() {
        return false;
    }
    let mut buf = [0u8; 20];
    let up = &mut buf[..w.len()];
    up.copy_from_slice(w.as_bytes());
    up.make_ascii_uppercase();
    let up = std::str::from_utf8(up).unwrap_or("");
    RESERVED.binary_search(&up).is_ok()
}

/// What a statement says as a request, computed once (prepared statements
/// are executed many times).
#[derive(Clone, Debug)]
pub(crate) struct Statement {
    pub method: String,
    pub endpoint: String,
    pub detail: String,
}

impl Statement {
    /// From SQL text as seen on the wire (possibly cut short).
    pub fn from_sql(raw: &[u8], dialect: Dialect) -> Statement {
        let text = String::from_utf8_lossy(raw);
        let text = text.trim_matches(|c: char| c.is_whitespace() || c == '\0');
        let verb = verb(text);
        Statement {
            method: if verb.is_empty() { "QUERY".to_string() } else { verb },
            endpoint: template_with(text, dialect),
            detail: crate::truncate_display(text, crate::MAX_DETAIL),
        }
    }

    /// A prepared statement executed whose SQL we never saw.
    pub fn unknown(detail: &str) -> Statement {
        Statement {
            method: "EXECUTE".to_string(),
            endpoint: "EXECUTE".to_string(),
            detail: crate::truncate_display(detail, crate::MAX_DETAIL),
        }
    }

    /// A protocol command without SQL: its name is method and endpoint.
    pub fn command(name: &str, detail: String) -> Statement {
        Statement {
            method: name.to_string(),
            endpoint: name.to_string(),
            detail: crate::truncate_display(&detail, crate::MAX_DETAIL),
        }
    }

    pub fn info(&self) -> crate::RequestInfo {
        crate::RequestInfo {
            method: self.method.clone(),
            endpoint: self.endpoint.clone(),
            detail: self.detail.clone(),
            trace: None,
        }
    }
}

/// A small map that forgets its oldest entry when full (prepared statements
/// per connection).
pub(crate) struct BoundedMap<K, V> {
    entries: Vec<(K, V)>,
}

impl<K, V> Default for BoundedMap<K, V> {
    fn default() -> Self {
        BoundedMap { entries: Vec::new() }
    }
}

impl<K: PartialEq, V: Clone> BoundedMap<K, V> {
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: PartialEq + ?Sized,
    {
        self.entries.iter().find(|(k, _)| k.borrow() == key).map(|(_, v)| v.clone())
    }

    pub fn insert(&mut self, key: K, value: V, cap: usize) {
        self.entries.retain(|(k, _)| *k != key);
        if self.entries.len() >= cap.max(1) {
            self.entries.remove(0);
        }
        self.entries.push((key, value));
    }

    pub fn remove<Q>(&mut self, key: &Q)
    where
        K: std::borrow::Borrow<Q>,
        Q: PartialEq + ?Sized,
    {
        self.entries.retain(|(k, _)| k.borrow() != key);
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pg(s: &str) -> String {
        template_with(s, Dialect::Postgres)
    }

    fn my(s: &str) -> String {
        template_with(s, Dialect::Mysql)
    }

    #[test]
    fn reserved_words_are_sorted_for_binary_search() {
        assert!(RESERVED.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn literals_become_placeholders() {
        assert_eq!(
            template("SELECT * FROM t WHERE id = 42 AND n IN (1,2,3)"),
            "SELECT * FROM t WHERE id = ? AND n IN (?)"
        );
        assert_eq!(
            template("select * from t where name = 'bob''s' and x > 1.5e3"),
            "SELECT * FROM t WHERE name = ? AND x > ?"
        );
        assert_eq!(template("SELECT 0xFF, x'0a', b'01', TRUE, false, NULL"), "SELECT ?, ?, ?, ?, ?, NULL");
        assert_eq!(template("SELECT -5, x - 1, x-1, (-2)"), "SELECT ?, x - ?, x-?, (?)");
        assert_eq!(template("UPDATE t SET a = a + -3"), "UPDATE t SET a = a + ?");
        assert_eq!(template("select x from t where y=-1"), "SELECT x FROM t WHERE y=?");
        assert_eq!(template("SELECT .5, 1., 1_000"), "SELECT ?, ?, ?");
    }

    #[test]
    fn placeholders_and_identifiers_are_kept() {
        assert_eq!(
            pg("SELECT \"Users\".\"id\" FROM \"Users\" WHERE \"id\" = $1"),
            "SELECT \"Users\".\"id\" FROM \"Users\" WHERE \"id\" = $1"
        );
        assert_eq!(
            my("SELECT `select` FROM `t` WHERE a = ? AND b = :name AND c = @v"),
            "SELECT `select` FROM `t` WHERE a = ? AND b = :name AND c = @v"
        );
        assert_eq!(my("SELECT @@session.sql_mode"), "SELECT @@session.sql_mode");
        assert_eq!(template("SELECT t1.col2 FROM t1"), "SELECT t1.col2 FROM t1");
        assert_eq!(my("SELECT * FROM 1st_table"), "SELECT * FROM 1st_table");
        assert_eq!(
            template("select Count(*) from Orders o where o.user_id = 7"),
            "SELECT Count(*) FROM Orders o WHERE o.user_id = ?"
        );
        // Keywords after a dot are names.
        assert_eq!(template("select t.from, t.order from t"), "SELECT t.from, t.order FROM t");
    }

    #[test]
    fn strings_by_dialect() {
        // MySQL: "..." is a string and backslash escapes the quote.
        assert_eq!(
            my(r#"SELECT * FROM t WHERE a = "x" AND b = 'it\'s' AND c = 1"#),
            "SELECT * FROM t WHERE a = ? AND b = ? AND c = ?"
        );
        // PostgreSQL: standard strings keep backslashes; E'' strings escape.
        assert_eq!(pg(r"SELECT 'C:\' AS p, 1"), "SELECT ? AS p, ?");
        assert_eq!(pg(r"SELECT E'it\'s', 2"), "SELECT ?, ?");
        assert_eq!(pg("SELECT $$a 'b' $1$$, $tag$x$$y$tag$, $1"), "SELECT ?, ?, $1");
        assert_eq!(pg("SELECT U&'d\\0061t', N'x', '2020-01-01'::date"), "SELECT ?, ?, ?::date");
        assert_eq!(my("SELECT _utf8mb4'abc', _binary'x'"), "SELECT ?, ?");
    }

    #[test]
    fn comments_and_whitespace() {
        assert_eq!(
            template("  SELECT  a,\n\t b -- trailing\nFROM t /* c */ WHERE x = 1  "),
            "SELECT a, b FROM t WHERE x = ?"
        );
        assert_eq!(template("/* app=web,request=9f2c */ SELECT 1"), "SELECT ?");
        assert_eq!(pg("SELECT /* a /* nested */ still */ 1"), "SELECT ?");
        assert_eq!(my("SELECT 1 # comment 123\nFROM dual"), "SELECT ? FROM dual");
        assert_eq!(my("/*!40101 SET NAMES utf8mb4 */"), "SET NAMES utf8mb4");
        assert_eq!(pg("SELECT data #> '{a,b}' FROM t"), "SELECT data #> ? FROM t");
        assert_eq!(template("SELECT 1;;"), "SELECT ?");
        assert_eq!(template("SELECT 1; SELECT 2;"), "SELECT ?; SELECT ?");
        // mysqlslap ends its statements with a NUL byte.
        assert_eq!(
            my("SELECT intcol1,intcol2,charcol1,charcol2 FROM t1\0"),
            "SELECT intcol1,intcol2,charcol1,charcol2 FROM t1"
        );
    }

    #[test]
    fn in_lists_collapse() {
        assert_eq!(
            template("SELECT * FROM t WHERE id IN (1, 2, 3) AND k NOT IN ('a','b')"),
            "SELECT * FROM t WHERE id IN (?) AND k NOT IN (?)"
        );
        assert_eq!(template("SELECT * FROM t WHERE id IN ($1, $2, $3)"), "SELECT * FROM t WHERE id IN ($1)");
        assert_eq!(
            template("SELECT * FROM t WHERE (a, b) IN ((1, 2), (3, 4))"),
            "SELECT * FROM t WHERE (a, b) IN ((?, ?))"
        );
        assert_eq!(
            template("SELECT * FROM t WHERE id IN (SELECT id FROM u WHERE x = 1)"),
            "SELECT * FROM t WHERE id IN (SELECT id FROM u WHERE x = ?)"
        );
        assert_eq!(
            pg("SELECT * FROM t WHERE id = ANY(ARRAY[1, 2, 3])"),
            "SELECT * FROM t WHERE id = ANY(ARRAY[?])"
        );
        // The number of items does not matter.
        let a = template("select 1 from t where id in (1)");
        let b = template("select 1 from t where id in (1,2,3,4,5,6,7,8,9,10)");
        assert_eq!(a, b);
    }

    #[test]
    fn values_keep_one_row() {
        assert_eq!(
            template("insert into users values (1, 'alice', 'a@x.org'), (2, 'bob''s', 'b@x.org') on conflict do nothing;"),
            "INSERT INTO users VALUES (?, ?, ?) ON CONFLICT DO NOTHING"
        );
        assert_eq!(
            my("INSERT INTO t (a, b) VALUES (1, NOW()), (2, NOW()), (3, NOW())"),
            "INSERT INTO t (a, b) VALUES (?, NOW())"
        );
        assert_eq!(my("INSERT INTO t VALUES ROW(1, 2), ROW(3, 4)"), "INSERT INTO t VALUES ROW(?, ?)");
        // A row list cut by the snaplen.
        assert_eq!(
            template("INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, 'c"),
            "INSERT INTO t VALUES (?, ?)"
        );
        // An IN list cut by the snaplen.
        assert_eq!(template("SELECT * FROM t WHERE id IN (1, 2, 3"), "SELECT * FROM t WHERE id IN (?");
        assert_eq!(template("SELECT * FROM t WHERE id IN (1, 22, 333,"), "SELECT * FROM t WHERE id IN (?");
    }

    #[test]
    fn generated_names_are_anonymised() {
        assert_eq!(template("SAVEPOINT sa_savepoint_12"), "SAVEPOINT ?");
        assert_eq!(pg("RELEASE SAVEPOINT \"s1402_x1\""), "RELEASE SAVEPOINT ?");
        assert_eq!(template("ROLLBACK TO SAVEPOINT sp_3"), "ROLLBACK TO SAVEPOINT ?");
        assert_eq!(pg("EXECUTE pdo_stmt_0000002a(1, 'x')"), "EXECUTE ?(?, ?)");
        assert_eq!(pg("DEALLOCATE PREPARE stmt_9"), "DEALLOCATE PREPARE ?");
        assert_eq!(pg("FETCH FORWARD 100 FROM \"_django_curs_1403_sync_1\""), "FETCH FORWARD ? FROM ?");
        assert_eq!(pg("CLOSE c_77"), "CLOSE ?");
        assert_eq!(
            pg("CREATE TRIGGER t BEFORE INSERT ON x FOR EACH ROW EXECUTE FUNCTION f()"),
            "CREATE TRIGGER t BEFORE INSERT ON x FOR EACH ROW EXECUTE FUNCTION f()"
        );
    }

    #[test]
    fn pgbench_statements() {
        // pgbench's built-in TPC-B-like script (simple protocol, values inlined).
        assert_eq!(pg("BEGIN;"), "BEGIN");
        assert_eq!(
            pg("UPDATE pgbench_accounts SET abalance = abalance + -2241 WHERE aid = 37226;"),
            "UPDATE pgbench_accounts SET abalance = abalance + ? WHERE aid = ?"
        );
        assert_eq!(
            pg("SELECT abalance FROM pgbench_accounts WHERE aid = 37226;"),
            "SELECT abalance FROM pgbench_accounts WHERE aid = ?"
        );
        assert_eq!(
            pg("INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (3, 1, 37226, -2241, CURRENT_TIMESTAMP);"),
            "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (?, ?, ?, ?, CURRENT_TIMESTAMP)"
        );
        assert_eq!(pg("END;"), "END");
        // -M prepared / extended keep the parameters.
        assert_eq!(
            pg("UPDATE pgbench_tellers SET tbalance = tbalance + $1 WHERE tid = $2;"),
            "UPDATE pgbench_tellers SET tbalance = tbalance + $1 WHERE tid = $2"
        );
        assert_eq!(pg("vacuum pgbench_branches"), "VACUUM pgbench_branches");
        assert_eq!(pg("truncate pgbench_history"), "TRUNCATE pgbench_history");
    }

    #[test]
    fn mysqlslap_statements() {
        let insert = "INSERT INTO t1 VALUES (1804289383,846930886,'xvtvmC9127qJNm06sGB8R92q2j7vTiiITRDG',\
                      '97RGHZ65mNzkSrYT3zWoSbg9cNePQr1bzSk81qDgE4Oanw3rnPfGsBHSbnu1evTdFDe83ro9w4jjteQg4yoo')\0";
        assert_eq!(my(insert), "INSERT INTO t1 VALUES (?,?,?,?)");
        assert_eq!(my("DROP SCHEMA IF EXISTS `mysqlslap`"), "DROP SCHEMA IF EXISTS `mysqlslap`");
        assert_eq!(
            my("CREATE TABLE `t1` (intcol1 INT(32) ,intcol2 INT(32) ,charcol1 VARCHAR(128),charcol2 VARCHAR(128))\0"),
            "CREATE TABLE `t1` (intcol1 INT(?) ,intcol2 INT(?) ,charcol1 VARCHAR(?),charcol2 VARCHAR(?))"
        );
    }

    #[test]
    fn templates_are_truncated() {
        let cols: Vec<String> = (0..100).map(|i| format!("column_{i}")).collect();
        let t = template(&format!("SELECT {} FROM t", cols.join(", ")));
        assert!(t.len() <= MAX_TEMPLATE + '…'.len_utf8(), "{}", t.len());
        assert!(t.ends_with('…'));
    }

    #[test]
    fn unterminated_literals_do_not_leak() {
        assert_eq!(template("SELECT * FROM t WHERE secret = 'hunter2"), "SELECT * FROM t WHERE secret = ?");
        assert_eq!(pg("SELECT $x$secret"), "SELECT ?");
        assert_eq!(template("SELECT 1 /* unterminated secret"), "SELECT ?");
    }

    #[test]
    fn verbs() {
        assert_eq!(verb("select 1"), "SELECT");
        assert_eq!(verb("  /* c */ -- x\n (SELECT 1) UNION (SELECT 2)"), "SELECT");
        assert_eq!(verb("BEGIN;"), "BEGIN");
        assert_eq!(verb("commit"), "COMMIT");
        assert_eq!(verb("SET NAMES 'utf8mb4'"), "SET");
        assert_eq!(verb("show tables"), "SHOW");
        assert_eq!(verb("WITH x AS (SELECT 1) SELECT * FROM x"), "SELECT");
        assert_eq!(
            verb("with recursive r(n) as (select 1 union all select n+1 from r) update t set a = 1"),
            "UPDATE"
        );
        assert_eq!(verb("WITH a AS (DELETE FROM t RETURNING *), b AS MATERIALIZED (SELECT 1) INSERT INTO u SELECT * FROM a"), "INSERT");
        assert_eq!(verb("WITH x AS (SELECT 1"), "WITH");
        assert_eq!(verb(""), "");
        assert_eq!(verb("123"), "");
        assert_eq!(verb("\"quoted\""), "");
        assert_eq!(verb("ÄÖÜ"), "");
    }

    proptest! {
        #[test]
        fn never_panics_and_stays_bounded(s in any::<String>()) {
            for d in [Dialect::Generic, Dialect::Postgres, Dialect::Mysql] {
                let t = template_with(&s, d);
                prop_assert!(t.len() <= MAX_TEMPLATE + 3);
            }
            let v = verb(&s);
            prop_assert!(v.len() <= 24);
        }

        #[test]
        fn sql_like_input_never_panics(s in "[a-zA-Z0-9 '\"`$?:@#/*\\-+=<>(),;.\\[\\]\\\\\n]{0,200}") {
            for d in [Dialect::Generic, Dialect::Postgres, Dialect::Mysql] {
                let t = template_with(&s, d);
                prop_assert!(t.len() <= MAX_TEMPLATE + 3);
            }
        }

        #[test]
        fn literal_values_do_not_change_the_template(a in any::<i64>(), b in "[a-zA-Z0-9 ]{0,20}", n in 1usize..20) {
            let list: Vec<String> = (0..n).map(|i| i.to_string()).collect();
            let sql = format!("SELECT * FROM t WHERE a = {a} AND b = '{b}' AND c IN ({})", list.join(", "));
            prop_assert_eq!(template(&sql), "SELECT * FROM t WHERE a = ? AND b = ? AND c IN (?)");
        }
    }
}

/// Replaying captured conversations in the SQL parsers' tests.
#[cfg(test)]
pub(crate) mod test_support {
    use crate::{Chunk, Direction, Extent, Info, ParseEvent, Parser};

    /// One captured recv(): connection number, direction, bytes moved, head.
    pub struct Captured {
        pub conn: u32,
        pub dir: Direction,
        pub len: usize,
        pub head: Vec<u8>,
    }

    /// Reads a fixture: `conn C|S len hex` lines, `#` comments.
    pub fn load(text: &str) -> Vec<Captured> {
        let mut out = Vec::new();
        for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let hex = f[3].as_bytes();
            let head = (0..hex.len() / 2)
                .map(|i| {
                    u8::from_str_radix(std::str::from_utf8(&hex[2 * i..2 * i + 2]).unwrap(), 16).unwrap()
                })
                .collect();
            let dir = if f[1] == "C" { Direction::Request } else { Direction::Response };
            out.push(Captured { conn: f[0].parse().unwrap(), dir, len: f[2].parse().unwrap(), head });
        }
        out
    }

    /// Feeds connection `conn` to a fresh parser with heads cut at `snaplen`.
    pub fn replay<P: Parser + Default>(caps: &[Captured], conn: u32, snaplen: usize) -> (Vec<ParseEvent>, P) {
        let mut p = P::default();
        let mut out = Vec::new();
        for c in caps.iter().filter(|c| c.conn == conn) {
            let head = &c.head[..c.head.len().min(snaplen)];
            p.feed(Chunk { dir: c.dir, head, len: c.len }, &mut out);
        }
        (out, p)
    }

    /// A compact line per event: `> METHOD endpoint [Extent]`, `< STATUS [Extent]`, `> end`, `< end`.
    pub fn describe(events: &[ParseEvent]) -> Vec<String> {
        events
            .iter()
            .map(|e| match e {
                ParseEvent::Start { info: Info::Request(r), extent, .. } => {
                    format!("> {} {}{}", r.method, r.endpoint, ext(*extent))
                }
                ParseEvent::Start { info: Info::Response(r), extent, .. } => {
                    let err = if r.is_error { format!(" ERR {}", r.message) } else { String::new() };
                    format!("< {}{}{}", r.status, err, ext(*extent))
                }
                ParseEvent::End { dir: Direction::Request, .. } => "> end".to_string(),
                ParseEvent::End { dir: Direction::Response, .. } => "< end".to_string(),
            })
            .collect()
    }

    fn ext(e: Extent) -> &'static str {
        match e {
            Extent::Complete => "",
            Extent::Continues => " [continues]",
            Extent::Unknown => " [unknown]",
        }
    }
}

#[cfg(test)]
mod replay_tests {
    use super::test_support::{describe, load, replay};
    use crate::{mysql::MysqlParser, postgres::PostgresParser, Parser};

    const FIXTURES: [(&str, &str); 10] = [
        ("pg", include_str!("../tests/fixtures/sql/pg_psql.txt")),
        ("pg", include_str!("../tests/fixtures/sql/pg_pgbench_simple.txt")),
        ("pg", include_str!("../tests/fixtures/sql/pg_pgbench_extended.txt")),
        ("pg", include_str!("../tests/fixtures/sql/pg_pgbench_prepared.txt")),
        ("pg", include_str!("../tests/fixtures/sql/pg_pgbench_init.txt")),
        ("pg", include_str!("../tests/fixtures/sql/pg_error_extended.txt")),
        ("pg", include_str!("../tests/fixtures/sql/pg_error_prepared.txt")),
        ("my", include_str!("../tests/fixtures/sql/my_client.txt")),
        ("my", include_str!("../tests/fixtures/sql/my_prepared.txt")),
        ("my", include_str!("../tests/fixtures/sql/my_mysqlslap.txt")),
    ];

    /// Every captured conversation at every snaplen: one response per
    /// request, nothing given up, even when heads show only a few bytes.
    #[test]
    fn every_fixture_at_every_snaplen() {
        for (i, (proto, text)) in FIXTURES.iter().enumerate() {
            let caps = load(text);
            let mut conns: Vec<u32> = caps.iter().map(|c| c.conn).collect();
            conns.dedup();
            for conn in conns {
                for snaplen in [32, 64, 128, 256, 1024, 4096] {
                    let (events, gave_up) = if *proto == "pg" {
                        let (e, p) = replay::<PostgresParser>(&caps, conn, snaplen);
                        (e, p.gave_up())
                    } else {
                        let (e, p) = replay::<MysqlParser>(&caps, conn, snaplen);
                        (e, p.gave_up())
                    };
                    let got = describe(&events);
                    let reqs = got.iter().filter(|l| l.starts_with("> ") && *l != "> end").count();
                    let resps = got.iter().filter(|l| l.starts_with("< ") && *l != "< end").count();
                    let ctx = format!("fixture {i} conn {conn} snaplen {snaplen}: {got:?}");
                    assert_eq!(reqs, resps, "{ctx}");
                    assert_eq!(gave_up, 0, "{ctx}");
                    let opened = got.iter().filter(|l| l.ends_with("[continues]")).count();
                    let ended = got.iter().filter(|l| l.ends_with(" end")).count();
                    assert_eq!(opened, ended, "{ctx}");
                }
            }
        }
    }
}
