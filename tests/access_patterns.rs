//! How the kernels touch memory, from their own index arithmetic: each
//! kernel the planner can choose on a GPU runs on lavapipe with every index
//! into a storage or workgroup array wrapped in a call that records it (for
//! the 32 threads of workgroup 0 with local index < 32: one 32-lane
//! subgroup, as NVIDIA's warps and AMD's wave32 form them), the rest of the
//! kernel untouched. The i-th access a lane makes at one place of the source
//! pairs with the i-th access of the other lanes there: one instruction.
//! Per instruction:
//!
//! - **storage** (global memory): the 32-byte sectors it touches, against
//!   the fewest that could hold the bytes it reads (`full` where they are
//!   equal: every sector fully used; a broadcast, one address, is full);
//! - **workgroup memory**: its bank conflict, with 32 banks of 4 bytes: a
//!   16-byte access goes in 4 phases of 8 lanes, a 4-byte one in one phase
//!   of 32; the degree is the most distinct words one bank serves in a
//!   phase (1: none; the same word read by many lanes is one).
//!
//! The test holds every kernel to at most 2-way conflicts on every
//! workgroup access and to full sectors on the loads of its operands (the
//! GEMMs' A and B, the time loops' W_hh, states, gates and tape), and prints
//! the table of every place. Shapes: products of 256 x 256 over K = 64;
//! time loops at H = 256 (resident: 64), B = 64, two steps.

mod common;

use std::collections::BTreeMap;

use gru_wgpu::gpu::ops::{kernel_variants, shader_source_typed, KernelVariant};

/// Records a lane keeps at most (each two words: place, index).
const TR_MAX: u32 = 65536;

/// One place of the source where an array is indexed.
#[derive(Clone, Debug)]
struct Site {
    array: String,
    line: usize,
    bytes: u32,
    workgroup: bool,
}

/// The declared arrays of `src`: name, element bytes (f32 storage: 4, a
/// vec4: 16), workgroup or storage.
fn arrays(src: &str) -> Vec<(String, u32, bool)> {
    let mut out = Vec::new();
    for line in src.lines() {
        let l = line.trim_start();
        let (workgroup, rest) = if let Some(r) = l.strip_prefix("var<workgroup>") {
            (true, r)
        } else if l.starts_with("@group(") && l.contains("var<storage") {
            (false, &l[l.find('>').unwrap() + 1..])
        } else {
            continue;
        };
        let Some((name, ty)) = rest.split_once(':') else {
            continue;
        };
        if !ty.trim_start().starts_with("array<") {
            continue;
        }
        let bytes = if ty.contains("vec4") { 16 } else { 4 };
        out.push((name.trim().to_string(), bytes, workgroup));
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// `src` with every `NAME[index]` of the `arrays` (`NAME[tr(site, index)]`,
/// innermost first) and the places.
fn wrap(src: &str, arrays: &[(String, u32, bool)], sites: &mut Vec<Site>) -> String {
    let chars: Vec<char> = src.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let found = arrays.iter().find(|(name, _, _)| {
            let n: Vec<char> = name.chars().collect();
            chars[i..].starts_with(&n)
                && chars.get(i + n.len()) == Some(&'[')
                && (i == 0 || !is_ident(chars[i - 1]))
        });
        let Some((name, bytes, workgroup)) = found else {
            out.push(chars[i]);
            i += 1;
            continue;
        };
        let open = i + name.chars().count();
        let mut depth = 0;
        let mut close = open;
        for (j, &c) in chars.iter().enumerate().skip(open) {
            match c {
                '[' => depth += 1,
                ']' => {
                    depth -= 1;
                    if depth == 0 {
                        close = j;
                        break;
                    }
                }
                _ => {}
            }
        }
        let inner: String = chars[open + 1..close].iter().collect();
        let inner = wrap(&inner, arrays, sites);
        let line = chars[..i].iter().filter(|&&c| c == '\n').count() + 1;
        sites.push(Site {
            array: name.clone(),
            line,
            bytes: *bytes,
            workgroup: *workgroup,
        });
        out.push_str(&format!("{name}[tr({}u, {inner})]", sites.len() - 1));
        i = close + 1;
    }
    out
}

const TRACER: &str = "
@group(1) @binding(0) var<storage, read_write> tr_out: array<u32>;
var<private> tr_me: u32 = 1000u;
var<private> tr_n: u32 = 0u;
fn tr_start(li: u32, wid: vec3<u32>) {
    tr_me = select(1000u, li, all(wid == vec3<u32>(0u)) && li < 32u);
    tr_n = 0u;
}
fn tr(site: u32, i: u32) -> u32 {
    if (tr_me < 32u) {
        if (tr_n < TR_MAXu) {
            let o = (tr_me * TR_MAXu + tr_n) * 2u;
            tr_out[o] = site;
            tr_out[o + 1u] = i;
        }
        tr_n = tr_n + 1u;
        tr_out[32u * TR_MAXu * 2u + tr_me] = tr_n;
    }
    return i;
}
";

/// `src` with `entry` starting the trace (its local index and workgroup
/// id, added to its parameters where it does not take them).
fn start_trace(src: &str, entry: &str) -> String {
    let at = src
        .find(&format!("fn {entry}("))
        .unwrap_or_else(|| panic!("no entry point {entry}"));
    let open = at + entry.len() + 4;
    // The parameter list ends at the `)` before the body's `{`.
    let body = open + src[open..].find('{').unwrap();
    let params_end = src[..body].rfind(')').unwrap();
    let params = &src[open..params_end];
    let name_of = |builtin: &str| {
        params.find(&format!("{builtin})")).map(|p| {
            let rest = &params[p + builtin.len() + 1..];
            rest.trim_start()
                .split(':')
                .next()
                .unwrap()
                .trim()
                .to_string()
        })
    };
    let mut extra = String::new();
    let li = name_of("local_invocation_index").unwrap_or_else(|| {
        extra.push_str(", @builtin(local_invocation_index) tr_li: u32");
        "tr_li".into()
    });
    let wid = name_of("workgroup_id").expect("the entry point takes its workgroup id");
    format!(
        "{}{}{}{{ tr_start({li}, {wid});{}",
        &src[..params_end],
        extra,
        &src[params_end..body],
        &src[body + 1..]
    )
}

/// The parameter struct `name` of `module` filled by member name (others 0).
fn params(module: &naga::Module, name: &str, values: &[(&str, u32)]) -> Vec<u8> {
    let (members, span) = module
        .types
        .iter()
        .find_map(|(_, ty)| match (&ty.name, &ty.inner) {
            (Some(n), naga::TypeInner::Struct { members, span }) if n == name => {
                Some((members.clone(), *span))
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("no struct {name}"));
    let mut bytes = vec![0u8; span as usize];
    for (field, v) in values {
        let m = members
            .iter()
            .find(|m| m.name.as_deref() == Some(field))
            .unwrap_or_else(|| panic!("{name} has no member {field}"));
        let o = m.offset as usize;
        bytes[o..o + 4].copy_from_slice(&v.to_le_bytes());
    }
    bytes
}

/// One instruction's figures.
#[derive(Default, Clone, Copy)]
struct Figures {
    instructions: usize,
    /// The worst sectors touched over the fewest possible (storage).
    sectors: f64,
    /// The worst bank-conflict degree (workgroup).
    conflict: usize,
}

fn analyse(site: &Site, lanes: &[(u32, u32)]) -> (f64, usize) {
    if site.workgroup {
        let words = site.bytes / 4;
        let phase = (32 / words) as usize;
        let mut worst = 1;
        let mut sorted = lanes.to_vec();
        sorted.sort();
        for chunk in sorted.chunks(phase.max(1)) {
            let mut per_bank: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
            for &(_, a) in chunk {
                for w in 0..words {
                    let word = a * words + w;
                    let v = per_bank.entry(word % 32).or_default();
                    if !v.contains(&word) {
                        v.push(word);
                    }
                }
            }
            worst = worst.max(per_bank.values().map(|v| v.len()).max().unwrap_or(1));
        }
        (1.0, worst)
    } else {
        let mut addrs: Vec<u32> = lanes.iter().map(|&(_, a)| a).collect();
        addrs.sort();
        addrs.dedup();
        let bytes = addrs.len() as u64 * site.bytes as u64;
        let mut sectors: Vec<u64> = addrs
            .iter()
            .map(|&a| a as u64 * site.bytes as u64 / 32)
            .collect();
        sectors.dedup();
        (sectors.len() as f64 / bytes.div_ceil(32) as f64, 1)
    }
}

/// How one kernel runs in the trace: its parameters and whether its
/// operands' loads are held to full sectors.
struct Case {
    variant: KernelVariant,
    params: Vec<(&'static str, u32)>,
    struct_name: &'static str,
}

fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    for v in kernel_variants() {
        let has = |n: &str, x: f64| v.constants.iter().any(|&(m, y)| m == n && y == x);
        let (file, entry) = (v.file, v.entry);
        let gemm = match (file, entry) {
            ("gemm.wgsl", "tiled") | ("gemm_subgroup.wgsl", "shared_a") => !has("G", 4.0),
            _ => false,
        };
        let steps = matches!(file, "gru_forward.wgsl" | "gru_backward.wgsl")
            && matches!(entry, "step" | "splitk" | "sequence" | "resident")
            && !has("W_PRIVATE", 1.0)
            && !has("PRECOMPUTED", 1.0)
            && !has("TAPE", 0.0);
        if gemm {
            let (m, n, k) = (256u32, 256u32, 64u32);
            let ta = has("TRANS_A", 1.0);
            let tb = has("TRANS_B", 1.0);
            out.push(Case {
                params: vec![
                    ("m", m),
                    ("n", n),
                    ("k", k),
                    ("k_chunk", k),
                    ("lda", if ta { m } else { k }),
                    ("ldb", if tb { k } else { n }),
                    ("ldc", n),
                    ("n_split", 1),
                ],
                struct_name: "Params",
                variant: v,
            });
        } else if steps {
            let h = if entry == "resident" { 64 } else { 256 };
            let fwd = file == "gru_forward.wgsl";
            out.push(Case {
                params: vec![
                    ("t_len", 2),
                    ("batch", 64),
                    ("hidden", h),
                    ("dirs", 1),
                    ("s", if fwd { 0 } else { 1 }),
                    ("has_bias", 1),
                    ("rows", 4),
                    ("steps", 2),
                ],
                struct_name: "StepParams",
                variant: v,
            });
        }
    }
    out
}

/// The records of each lane of one run of `case`'s kernel, instrumented.
fn trace(ctx: &gru_wgpu::gpu::GpuContext, case: &Case) -> (Vec<Site>, Vec<Vec<(u32, u32)>>) {
    let v = &case.variant;
    let src = shader_source_typed(v.file, v.types).unwrap();
    let decl = arrays(&src);
    let mut sites = Vec::new();
    let wrapped = wrap(&src, &decl, &mut sites);
    let traced = start_trace(&wrapped, v.entry) + &TRACER.replace("TR_MAXu", &format!("{TR_MAX}u"));
    let module = naga::front::wgsl::parse_str(&traced)
        .unwrap_or_else(|e| panic!("{}: {}", v.file, e.emit_to_string(&traced)));
    let info = naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::all(),
    )
    .validate(&module)
    .unwrap_or_else(|e| panic!("{}: {}", v.file, e.emit_to_string(&traced)));
    let dev = ctx.device();
    let sm = dev.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some("traced"),
        source: wgpu::ShaderSource::Wgsl(traced.clone().into()),
    });
    let constants: Vec<(&str, f64)> = v.constants.to_vec();
    let pipeline = dev.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some("traced"),
        layout: None,
        module: &sm,
        entry_point: Some(v.entry),
        compilation_options: wgpu::PipelineCompilationOptions {
            constants: &constants,
            zero_initialize_workgroup_memory: true,
        },
        cache: None,
    });
    // The group-0 bindings the entry point uses: P, and a large zeroed
    // buffer for each array.
    let ep = module
        .entry_points
        .iter()
        .position(|e| e.name == v.entry)
        .unwrap();
    let ep_info = info.get_entry_point(ep);
    let p_bytes = params(&module, case.struct_name, &case.params);
    let mut buffers = Vec::new();
    for (h, var) in module.global_variables.iter() {
        let Some(rb) = &var.binding else { continue };
        if rb.group != 0 || ep_info[h].is_empty() {
            continue;
        }
        let uniform = matches!(var.space, naga::AddressSpace::Uniform);
        let size = if uniform { 256 } else { 16 << 20 };
        let buf = dev.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::UNIFORM
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        if uniform {
            let mut b = p_bytes.clone();
            b.resize(256, 0);
            ctx.queue().write_buffer(&buf, 0, &b);
        }
        buffers.push((rb.binding, buf));
    }
    let words = (32 * TR_MAX * 2 + 32) as u64;
    let out = dev.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: words * 4,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    let entries: Vec<wgpu::BindGroupEntry> = buffers
        .iter()
        .map(|(b, buf)| wgpu::BindGroupEntry {
            binding: *b,
            resource: buf.as_entire_binding(),
        })
        .collect();
    let bg0 = dev.create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout: &pipeline.get_bind_group_layout(0),
        entries: &entries,
    });
    let bg1 = dev.create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout: &pipeline.get_bind_group_layout(1),
        entries: &[wgpu::BindGroupEntry {
            binding: 0,
            resource: out.as_entire_binding(),
        }],
    });
    let mut enc = dev.create_command_encoder(&Default::default());
    {
        let mut pass = enc.begin_compute_pass(&Default::default());
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &bg0, &[]);
        pass.set_bind_group(1, &bg1, &[]);
        pass.dispatch_workgroups(1, 1, 1);
    }
    ctx.queue().submit([enc.finish()]);
    let words = common::download(ctx, &out, words as usize);
    let words: Vec<u32> = words.iter().map(|f| f.to_bits()).collect();
    let base = (32 * TR_MAX * 2) as usize;
    let lanes = (0..32)
        .map(|lane| {
            let n = words[base + lane];
            assert!(
                n <= TR_MAX,
                "{}:{}: lane {lane} made {n} accesses, past the trace's {TR_MAX}",
                v.file,
                v.entry
            );
            (0..n as usize)
                .map(|i| {
                    let o = (lane * TR_MAX as usize + i) * 2;
                    (words[o], words[o + 1])
                })
                .collect()
        })
        .collect();
    (sites, lanes)
}

/// The one place known to read more sectors than its bytes need, with the
/// reason: `shared_a`'s fragments of A where A is stored (K, M) (TRANS_A:
/// the weight gradients' products) and not laid out in aligned vec4s (the
/// scalar kernel; with `VEC4` the same loads are one 16-byte load a thread
/// and use full sectors, which this test checks too). A subgroup needs 8
/// rows of A's tile per fragment, each thread a vec4 of 4 of them at one k,
/// and the lanes that share a row of threads take neighbouring k: 8 rows of
/// K of 8 bytes each per instruction. Reading them along m would take four
/// scalar shuffles a k in the inner loop instead of one vec4. The test
/// fails if this place gets better (take it off) or any other gets worse.
const KNOWN: [(&str, &str); 1] = [("gemm_subgroup.wgsl:shared_a(TRANS_A=1,TRANS_B=0,G=8)", "a")];

/// The operands whose loads must use full sectors.
const OPERANDS: [&str; 9] = ["a", "b", "a4", "b4", "w_hhT", "w_hh", "hs", "gates", "gi"];

#[test]
fn every_kernel_touches_memory_in_full_sectors_without_bank_conflicts() {
    let Some(ctx) = common::gpu() else {
        return;
    };
    let mut problems = Vec::new();
    let mut known_seen = Vec::new();
    let cases = cases();
    assert!(cases.len() >= 20, "{} kernels traced", cases.len());
    for case in &cases {
        let v = &case.variant;
        let c: Vec<String> = v
            .constants
            .iter()
            .map(|(n, x)| format!("{n}={x}"))
            .collect();
        let kernel = format!("{}:{}({})", v.file, v.entry, c.join(","));
        let (sites, lanes) = trace(&ctx, case);
        // (site, occurrence) -> (lane, index)
        let mut instr: BTreeMap<(u32, usize), Vec<(u32, u32)>> = BTreeMap::new();
        for (lane, recs) in lanes.iter().enumerate() {
            let mut seen: BTreeMap<u32, usize> = BTreeMap::new();
            for &(site, index) in recs {
                let n = seen.entry(site).or_default();
                instr
                    .entry((site, *n))
                    .or_default()
                    .push((lane as u32, index));
                *n += 1;
            }
        }
        let mut per_site: BTreeMap<u32, Figures> = BTreeMap::new();
        for ((site, _), lanes) in &instr {
            let s = &sites[*site as usize];
            let (sectors, conflict) = analyse(s, lanes);
            let f = per_site.entry(*site).or_default();
            f.instructions += 1;
            f.sectors = f.sectors.max(sectors);
            f.conflict = f.conflict.max(conflict);
        }
        println!("{kernel}");
        for (site, f) in &per_site {
            let s = &sites[*site as usize];
            let bad_bank = s.workgroup && f.conflict > 2;
            let bad_sector =
                !s.workgroup && OPERANDS.contains(&s.array.as_str()) && f.sectors > 1.0 + 1e-9;
            let known = KNOWN.contains(&(kernel.as_str(), s.array.as_str()));
            println!(
                "  {:>8} line {:>4} {:>9} x{:<6} {}{}",
                s.array,
                s.line,
                if s.workgroup { "workgroup" } else { "storage" },
                f.instructions,
                if s.workgroup {
                    format!("{}-way", f.conflict)
                } else {
                    format!("sectors {:.2}x", f.sectors)
                },
                match (bad_bank || bad_sector, known) {
                    (true, true) => "  <-- over (known)",
                    (true, false) => "  <-- over",
                    (false, true) => "  <-- known, but within",
                    _ => "",
                }
            );
            if (bad_bank || bad_sector) && known {
                known_seen.push((kernel.clone(), s.array.clone()));
            }
            if (bad_bank || bad_sector) && !known {
                problems.push(format!(
                    "{kernel}: {} (line {} of the composed source): {}",
                    s.array,
                    s.line,
                    if bad_bank {
                        format!("{}-way bank conflict", f.conflict)
                    } else {
                        format!("{:.2}x the sectors its bytes need", f.sectors)
                    }
                ));
            }
        }
    }
    for (kernel, array) in KNOWN {
        let sites: Vec<_> = known_seen
            .iter()
            .filter(|(k, a)| k == kernel && a == array)
            .collect();
        assert!(
            !sites.is_empty(),
            "{kernel} {array}: no longer over the bounds: take it off KNOWN"
        );
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
