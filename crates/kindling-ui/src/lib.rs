//! The web UI, embedded in the binary: plain HTML, CSS and JavaScript with
//! no build step and nothing fetched from the network. `kindling-api` serves
//! `index.html` at `/` and the other files under `/ui/`.
//!
//! Views (hash routes): `#/map` (service map), `#/requests` (request
//! explorer), `#/profiles` and `#/profile/{id}` / `#/trace/{trace_id}`
//! (trace-profiles with thread lanes, verdict and flame graph).

/// (name, content type, body) of every file.
const FILES: &[(&str, &str, &str)] = &[
    ("index.html", "text/html; charset=utf-8", include_str!("../assets/index.html")),
    ("app.css", "text/css; charset=utf-8", include_str!("../assets/app.css")),
    ("util.js", "text/javascript; charset=utf-8", include_str!("../assets/util.js")),
    ("map.js", "text/javascript; charset=utf-8", include_str!("../assets/map.js")),
    ("requests.js", "text/javascript; charset=utf-8", include_str!("../assets/requests.js")),
    ("profile.js", "text/javascript; charset=utf-8", include_str!("../assets/profile.js")),
    ("app.js", "text/javascript; charset=utf-8", include_str!("../assets/app.js")),
    ("favicon.svg", "image/svg+xml", include_str!("../assets/favicon.svg")),
];

/// A UI file by name: (content type, body).
pub fn asset(name: &str) -> Option<(&'static str, &'static str)> {
    FILES.iter().find(|(n, _, _)| *n == name).map(|(_, t, b)| (*t, *b))
}

/// Every file's name.
pub fn names() -> impl Iterator<Item = &'static str> {
    FILES.iter().map(|(n, _, _)| *n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_references_only_embedded_files() {
        let (_, index) = asset("index.html").unwrap();
        assert!(index.contains("<title>Kindling"));
        for part in index.split("/ui/").skip(1) {
            let name: String = part.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '.' || *c == '-').collect();
            assert!(asset(&name).is_some(), "index.html links /ui/{name}, which is not embedded");
        }
        assert!(!index.contains("http://") && !index.contains("https://"), "nothing from the network");
    }

    #[test]
    fn scripts_fetch_nothing_from_the_network() {
        for n in names() {
            let (_, body) = asset(n).unwrap();
            for bad in ["https://", "http://", "//cdn", "import("] {
                let hits: Vec<&str> = body.lines().filter(|l| l.contains(bad) && !l.contains("www.w3.org")).collect();
                assert!(hits.is_empty(), "{n} mentions {bad}: {hits:?}");
            }
        }
        assert!(asset("../Cargo.toml").is_none());
    }
}
