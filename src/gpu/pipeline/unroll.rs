//! Loops unrolled by the host before a shader is compiled.
//!
//! wgpu asks naga to bound every loop (`ShaderRuntimeChecks::
//! force_loop_bounding`: a counter that ends any loop after 2^64
//! iterations), and that second exit keeps drivers' compilers from
//! unrolling loops of constant trip count. A private array indexed by such a
//! loop's variable then lives in scratch memory instead of registers: AMD's
//! compiler gives `resident`, whose threads keep their slice of `W_hh` in
//! one, 24 KiB of scratch per wave (`kernel-stats`). So a loop written
//!
//! ```text
//! for (var kk = 0u; kk < RES_KMAX; kk = kk + 1u) { // unroll
//!     BODY
//! }
//! ```
//!
//! with a bound of a literal (`16u`), a constant (a shared one of
//! [`SHARED_CONSTS`], or one the source declares `const NAME: u32 = Nu;`)
//! or `Nu * NAME`, is written out by [`unroll`] as one block per iteration, `{ let kk = 0u;
//! BODY }`, ... : the same operations in the same order (bitwise the same
//! results), every index into the array a constant. The body may not
//! `break` or `continue` the loop.

use super::SHARED_CONSTS;

/// `src` with every loop marked `// unroll` written out (see the module).
/// Panics on a marked loop it cannot unroll: the shaders are the crate's
/// own, and every one is composed by the tests.
pub(crate) fn unroll(src: &str) -> String {
    if !src.contains("// unroll") {
        return src.to_string();
    }
    let lines: Vec<&str> = src.lines().collect();
    let consts = declared_consts(&lines);
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let Some((var, n)) = marked_loop(line, &consts) else {
            out.push_str(line);
            out.push('\n');
            i += 1;
            continue;
        };
        let indent = &line[..line.len() - line.trim_start().len()];
        let close = format!("{indent}}}");
        let end = (i + 1..lines.len())
            .find(|&k| lines[k].trim_end() == close)
            .unwrap_or_else(|| panic!("unroll: no closing brace for `{}`", line.trim()));
        let body = &lines[i + 1..end];
        for l in body {
            let t = l.trim_start();
            assert!(
                !(t.starts_with("break") || t.starts_with("continue")),
                "unroll: `{}` breaks or continues its loop",
                line.trim()
            );
        }
        for k in 0..n {
            out.push_str(&format!("{indent}{{ let {var} = {k}u;\n"));
            for l in body {
                out.push_str(l);
                out.push('\n');
            }
            out.push_str(&close);
            out.push('\n');
        }
        i = end + 1;
    }
    out
}

/// `(variable, trip count)` of a line `for (var V = 0u; V < BOUND; V = V +
/// 1u) { // unroll`.
fn marked_loop(line: &str, consts: &[(String, usize)]) -> Option<(String, usize)> {
    let t = line.trim();
    let head = t.strip_suffix("{ // unroll")?.trim_end();
    let inner = head.strip_prefix("for (var ")?.strip_suffix(')')?;
    let parts: Vec<&str> = inner.split(';').map(str::trim).collect();
    let [init, cond, step] = parts[..] else {
        panic!("unroll: `{t}` is not `for (init; cond; step)`");
    };
    let (var, start) = init.split_once('=').map(|(v, s)| (v.trim(), s.trim()))?;
    assert_eq!(start, "0u", "unroll: `{t}` does not start at 0u");
    assert_eq!(
        step,
        format!("{var} = {var} + 1u"),
        "unroll: `{t}` does not step by 1u"
    );
    let bound = cond
        .strip_prefix(var)
        .and_then(|c| c.trim_start().strip_prefix('<'))
        .map(str::trim)
        .unwrap_or_else(|| panic!("unroll: `{t}`: the condition is not `{var} < BOUND`"));
    Some((var.to_string(), bound_value(bound, t, consts)))
}

/// `(NAME, N)` of every line `const NAME: u32 = Nu;` (the shared constants
/// among them: `compose` emits them so).
fn declared_consts(lines: &[&str]) -> Vec<(String, usize)> {
    lines
        .iter()
        .filter_map(|l| {
            let rest = l.trim().strip_prefix("const ")?;
            let (name, v) = rest.split_once(": u32 = ")?;
            let v = v.strip_suffix("u;")?.parse().ok()?;
            Some((name.to_string(), v))
        })
        .collect()
}

/// The value of a literal `Nu`, a constant `NAME` or `Nu * NAME`.
fn bound_value(bound: &str, line: &str, consts: &[(String, usize)]) -> usize {
    let literal = |x: &str| {
        x.trim()
            .strip_suffix('u')
            .and_then(|f| f.parse::<usize>().ok())
    };
    let (factor, name) = match bound.split_once('*') {
        Some((f, n)) => (
            literal(f).unwrap_or_else(|| panic!("unroll: `{line}`: bad factor")),
            n.trim(),
        ),
        None => (1, bound),
    };
    if let Some(v) = literal(name) {
        return factor * v;
    }
    let declared = consts.iter().find(|(n, _)| n == name).map(|(_, v)| *v);
    let shared = SHARED_CONSTS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| *v);
    let v = declared.or(shared).unwrap_or_else(|| {
        panic!("unroll: `{line}`: `{name}` is not a constant (`const {name}: u32 = Nu;`)")
    });
    factor * v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marked_loop_becomes_one_block_per_iteration_and_the_rest_stays() {
        let src = "fn f() {\n    var a = 0.0;\n    for (var kk = 0u; kk < 2u * SEQ_ROWS; kk = kk + 1u) { // unroll\n        a = a + rw[kk];\n    }\n    for (var k = 0u; k < n; k = k + 1u) {\n        a = a + 1.0;\n    }\n}\n";
        let out = unroll(src);
        let blocks = out.matches("{ let kk = ").count();
        assert_eq!(blocks, 8, "2 * SEQ_ROWS = 8 iterations:\n{out}");
        assert!(out.contains("    { let kk = 0u;\n        a = a + rw[kk];\n    }\n"));
        assert!(out.contains("    { let kk = 7u;\n"));
        assert!(!out.contains("// unroll"));
        // An unmarked loop is left as it is.
        assert!(out.contains("for (var k = 0u; k < n; k = k + 1u) {"));
        assert_eq!(unroll("no loops\n"), "no loops\n");
        // A bound the source declares, and a literal one.
        let src = "const BK: u32 = 3u;\n  for (var k = 0u; k < BK; k = k + 1u) { // unroll\n    f(k);\n  }\n  for (var k = 0u; k < 2u; k = k + 1u) { // unroll\n    g(k);\n  }\n";
        let out = unroll(src);
        assert_eq!(out.matches("f(k);").count(), 3, "{out}");
        assert_eq!(out.matches("g(k);").count(), 2, "{out}");
    }

    #[test]
    #[should_panic(expected = "breaks or continues")]
    fn a_marked_loop_that_breaks_is_refused() {
        unroll(
            "    for (var k = 0u; k < RES_KMAX; k = k + 1u) { // unroll\n        break;\n    }\n",
        );
    }

    #[test]
    #[should_panic(expected = "is not a constant")]
    fn a_bound_that_is_not_a_shared_constant_is_refused() {
        unroll("    for (var k = 0u; k < n; k = k + 1u) { // unroll\n    }\n");
    }
}
