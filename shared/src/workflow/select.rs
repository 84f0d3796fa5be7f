//! Which databases a workflow acts on: `*` patterns, system databases, case-insensitive names.

use super::state::DatabaseFilter;

/// The system databases Azure Backup lists (tempdb is never listed).
pub const SYSTEM_DATABASES: &[&str] = &["master", "model", "msdb"];

pub fn is_system(db: &str) -> bool {
    SYSTEM_DATABASES.iter().any(|s| s.eq_ignore_ascii_case(db))
}

/// Case-insensitive glob with `*` (any run) and `?` (one character).
pub fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.to_lowercase().chars().collect();
    let t: Vec<char> = text.to_lowercase().chars().collect();
    let (mut pi, mut ti, mut star, mut mark) = (0usize, 0usize, None::<usize>, 0usize);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// `Ok(())` when the filter selects the database, `Err(reason)` otherwise.
pub fn select(filter: &DatabaseFilter, db: &str) -> Result<(), String> {
    if is_system(db) && !filter.include_system {
        return Err("system database (set includeSystem to protect it)".into());
    }
    if !filter.include.is_empty() && !filter.include.iter().any(|p| glob(p, db)) {
        return Err("not matched by the include patterns".into());
    }
    if let Some(p) = filter.exclude.iter().find(|p| glob(p, db)) {
        return Err(format!("excluded by pattern '{p}'"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob("sales*", "SalesDB"));
        assert!(glob("*db", "HRDB"));
        assert!(glob("h?db", "HRDB"));
        assert!(!glob("sales*", "HRDB"));
        assert!(glob("*", ""));
    }

    #[test]
    fn selection_rules() {
        let f = DatabaseFilter::default();
        assert!(select(&f, "msdb").is_err());
        assert!(select(&f, "SalesDB").is_ok());
        let f = DatabaseFilter { include: vec!["*db".into()], exclude: vec!["hr*".into()], include_system: true };
        assert!(select(&f, "msdb").is_ok());
        assert!(select(&f, "HRDB").unwrap_err().contains("excluded"));
        assert!(select(&f, "master").is_err());
    }
}
