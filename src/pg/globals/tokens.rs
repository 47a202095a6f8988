//! The tokens of one globals statement, and a cursor the statement
//! readers of [`super::parse`] walk them with. Deliberately narrower than
//! PostgreSQL's lexer: what pg_dumpall never writes (escape strings, dollar
//! quotes, comments, backslashes, operators) is refused here, so no text can
//! read one way to pgbak and another way to the server.

/// One token of a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Tok {
    /// A bare word: a keyword or an unquoted identifier (folded to lower case when used as a name).
    Word(String),
    /// A `"quoted"` identifier.
    Quoted(String),
    /// A standard `'string'` literal.
    Str(String),
    /// An integer, possibly negative.
    Num(String),
    Punct(char),
}

/// Splits one statement into tokens; refuses what pg_dumpall never writes
/// and what a second parser could read differently (escape strings, dollar
/// quotes, comments, backslashes).
pub(super) fn tokenize(stmt: &str) -> Result<Vec<Tok>, String> {
    let mut toks = Vec::new();
    let chars: Vec<char> = stmt.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '"' | '\'' => {
                let mut text = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err("an unterminated quote".into()),
                        Some(q) if *q == c && chars.get(i + 1) == Some(&c) => {
                            text.push(c);
                            i += 2;
                        }
                        Some(q) if *q == c => {
                            i += 1;
                            break;
                        }
                        Some(other) => {
                            text.push(*other);
                            i += 1;
                        }
                    }
                }
                toks.push(if c == '"' {
                    Tok::Quoted(text)
                } else {
                    Tok::Str(text)
                });
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let start = i;
                while chars
                    .get(i)
                    .is_some_and(|c| c.is_ascii_alphanumeric() || *c == '_')
                {
                    i += 1;
                }
                if matches!(chars.get(i), Some('\'' | '"' | '&' | '$')) {
                    return Err(format!(
                        "a prefixed string or identifier ({}{})",
                        chars[start..i].iter().collect::<String>(),
                        chars[i]
                    ));
                }
                toks.push(Tok::Word(chars[start..i].iter().collect()));
            }
            c if c.is_ascii_digit()
                || (c == '-' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) =>
            {
                let start = i;
                i += 1;
                while chars.get(i).is_some_and(char::is_ascii_digit) {
                    i += 1;
                }
                toks.push(Tok::Num(chars[start..i].iter().collect()));
            }
            ',' | '(' | ')' | '=' | '.' => {
                toks.push(Tok::Punct(c));
                i += 1;
            }
            other => return Err(format!("the character {other:?}")),
        }
    }
    Ok(toks)
}

/// A cursor over one statement's tokens.
pub(super) struct Cursor {
    pub(super) toks: Vec<Tok>,
    pub(super) at: usize,
}

impl Cursor {
    pub(super) fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.at)
    }

    pub(super) fn is_kw(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(w)) if w.eq_ignore_ascii_case(kw))
    }

    /// Takes the keyword when it is next.
    pub(super) fn kw(&mut self, kw: &str) -> bool {
        let found = self.is_kw(kw);
        self.at += usize::from(found);
        found
    }

    pub(super) fn expect(&mut self, kw: &str) -> Result<(), String> {
        if self.kw(kw) {
            Ok(())
        } else {
            Err(format!("expected {kw} {}", self.here()))
        }
    }

    pub(super) fn punct(&mut self, c: char) -> bool {
        let found = self.peek() == Some(&Tok::Punct(c));
        self.at += usize::from(found);
        found
    }

    /// An identifier: quoted as written, bare folded to lower case.
    pub(super) fn ident(&mut self) -> Result<String, String> {
        let name = match self.peek() {
            Some(Tok::Quoted(q)) if !q.is_empty() => q.clone(),
            Some(Tok::Word(w)) => w.to_ascii_lowercase(),
            _ => return Err(format!("expected a name {}", self.here())),
        };
        self.at += 1;
        Ok(name)
    }

    /// `name[, name...]`.
    pub(super) fn idents(&mut self) -> Result<Vec<String>, String> {
        let mut names = vec![self.ident()?];
        while self.punct(',') {
            names.push(self.ident()?);
        }
        Ok(names)
    }

    /// A dotted name (`pg_stat_statements.track`).
    pub(super) fn dotted(&mut self) -> Result<String, String> {
        let mut name = self.ident()?;
        while self.punct('.') {
            name.push('.');
            name.push_str(&self.ident()?);
        }
        Ok(name)
    }

    pub(super) fn string(&mut self) -> Result<String, String> {
        match self.peek() {
            Some(Tok::Str(s)) => {
                let s = s.clone();
                self.at += 1;
                Ok(s)
            }
            _ => Err(format!("expected a quoted string {}", self.here())),
        }
    }

    pub(super) fn number(&mut self) -> Result<i32, String> {
        match self.peek() {
            Some(Tok::Num(n)) => {
                let n = n.parse().map_err(|_| format!("the number {n}"))?;
                self.at += 1;
                Ok(n)
            }
            _ => Err(format!("expected a number {}", self.here())),
        }
    }

    pub(super) fn done(&self) -> bool {
        self.at >= self.toks.len()
    }

    pub(super) fn end(&self) -> Result<(), String> {
        if self.done() {
            Ok(())
        } else {
            Err(format!("unexpected {}", self.here()))
        }
    }

    /// Where the cursor is, for a message.
    pub(super) fn here(&self) -> String {
        match self.peek() {
            None => "at the end".into(),
            Some(Tok::Word(w)) => format!("at {w}"),
            Some(Tok::Quoted(q)) => format!("at \"{q}\""),
            Some(Tok::Str(_)) => "at a string".into(),
            Some(Tok::Num(n)) => format!("at {n}"),
            Some(Tok::Punct(c)) => format!("at {c}"),
        }
    }
}
