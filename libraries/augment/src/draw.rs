//! Drawing a plan from the composition: every decision and parameter comes from the Philox
//! stream of its transform's slot, so changing one transform never shifts another's numbers.

use anyhow::{Result, bail};

use crate::plan::{Applied, Plan};
use crate::rng::{Draws, Purpose, Stream};
use crate::spec::{Axis, Count, Range, Range3, TransformSpec};
use crate::volume::Affine;

/// What the draw needs to know of the input.
pub struct Geometry<'a> {
    pub dims: [usize; 3],
    pub affine: &'a Affine,
    /// Label values present in the label map carried with the image (sorted), if any.
    pub labels: Option<&'a [f64]>,
}

/// Checks a composition once, before any item: ranges in order, probabilities in [0, 1],
/// weights that match, axes that exist.
pub fn validate(specs: &[TransformSpec]) -> Result<()> {
    for s in specs {
        validate_one(s)?;
    }
    Ok(())
}

fn check_p(name: &str, p: f64) -> Result<()> {
    if !(0.0..=1.0).contains(&p) {
        bail!("{name}: p = {p} is not a probability");
    }
    Ok(())
}

fn check_range(name: &str, field: &str, r: &Range) -> Result<()> {
    if let Range::Between([a, b]) = r
        && a > b
    {
        bail!("{name}: {field} [{a}, {b}] is empty (the lower bound is above the upper)");
    }
    Ok(())
}

fn check_range3(name: &str, field: &str, r: &Range3) -> Result<()> {
    let pairs: Vec<[f64; 2]> = match r {
        Range3::Symmetric(_) => vec![],
        Range3::Between(p) => vec![*p],
        Range3::PerAxis(v) => vec![[v[0], v[1]], [v[2], v[3]], [v[4], v[5]]],
    };
    for [a, b] in pairs {
        if a > b {
            bail!("{name}: {field} [{a}, {b}] is empty (the lower bound is above the upper)");
        }
    }
    Ok(())
}

fn validate_one(s: &TransformSpec) -> Result<()> {
    use TransformSpec as T;
    match s {
        T::Flip(f) => {
            check_p("flip", f.p)?;
            check_p("flip", f.flip_probability)?;
            for a in &f.axes {
                axis_letter_ok(a)?;
            }
        }
        T::Affine(a) => {
            check_p("affine", a.p)?;
            check_range3("affine", "scales", &a.scales)?;
            check_range3("affine", "degrees", &a.degrees)?;
            check_range3("affine", "translation", &a.translation)?;
        }
        T::Elastic(e) => {
            check_p("elastic", e.p)?;
            if e.num_control_points.get().iter().any(|&n| n < 4) {
                bail!("elastic: num_control_points must be at least 4 per axis");
            }
            if e.locked_borders > 2 {
                bail!("elastic: locked_borders is 0, 1 or 2");
            }
        }
        T::Anisotropy(a) => {
            check_p("anisotropy", a.p)?;
            check_range("anisotropy", "downsampling", &a.downsampling)?;
            if a.axes.is_empty() {
                bail!("anisotropy: axes is empty");
            }
        }
        T::Motion(m) => {
            check_p("motion", m.p)?;
            if m.num_transforms == 0 {
                bail!("motion: num_transforms must be at least 1");
            }
        }
        T::Ghosting(g) => {
            check_p("ghosting", g.p)?;
            check_range("ghosting", "intensity", &g.intensity)?;
            if g.restore.is_some_and(|r| !(0.0..1.0).contains(&r)) {
                bail!("ghosting: restore must be in [0, 1)");
            }
            if g.axes.is_empty() {
                bail!("ghosting: axes is empty");
            }
        }
        T::Spike(sp) => {
            check_p("spike", sp.p)?;
            check_range("spike", "intensity", &sp.intensity)?;
        }
        T::BiasField(b) => {
            check_p("bias_field", b.p)?;
            check_range("bias_field", "coefficients", &b.coefficients)?;
            if b.order > 10 {
                bail!("bias_field: order {} is above 10", b.order);
            }
        }
        T::Blur(b) => {
            check_p("blur", b.p)?;
            check_range3("blur", "std", &b.std)?;
        }
        T::Noise(n) => {
            check_p("noise", n.p)?;
            check_range("noise", "std", &n.std)?;
        }
        T::Gamma(g) => {
            check_p("gamma", g.p)?;
            check_range("gamma", "log_gamma", &g.log_gamma)?;
        }
        T::Swap(sw) => {
            check_p("swap", sw.p)?;
            if sw.patch_size.get().contains(&0) {
                bail!("swap: patch_size must be positive");
            }
        }
        T::Rescale(r) => {
            check_p("rescale", r.p)?;
            let [lo, hi] = r.percentiles;
            if !(0.0..=100.0).contains(&lo) || !(0.0..=100.0).contains(&hi) || lo >= hi {
                bail!("rescale: percentiles [{lo}, {hi}] must satisfy 0 <= low < high <= 100");
            }
        }
        T::ZNormalize(z) => check_p("z_normalize", z.p)?,
        T::LabelsToImage(l) => {
            check_p("labels_to_image", l.p)?;
            check_range("labels_to_image", "mean", &l.mean)?;
            check_range("labels_to_image", "std", &l.std)?;
        }
        T::OneOf(o) => {
            check_p("one_of", o.p)?;
            if o.transforms.is_empty() {
                bail!("one_of: transforms is empty");
            }
            if !o.weights.is_empty() && o.weights.len() != o.transforms.len() {
                bail!(
                    "one_of: {} weights for {} transforms",
                    o.weights.len(),
                    o.transforms.len()
                );
            }
            if o.weights.iter().any(|w| *w < 0.0)
                || (!o.weights.is_empty() && o.weights.iter().sum::<f64>() <= 0.0)
            {
                bail!("one_of: weights must be non-negative and not all zero");
            }
            validate(&o.transforms)?;
        }
        T::SomeOf(s) => {
            check_p("some_of", s.p)?;
            let (lo, hi) = count_bounds(&s.k);
            if lo > hi || hi as usize > s.transforms.len() {
                bail!(
                    "some_of: k must be at most the {} transforms listed",
                    s.transforms.len()
                );
            }
            validate(&s.transforms)?;
        }
    }
    Ok(())
}

fn count_bounds(c: &Count) -> (u32, u32) {
    match *c {
        Count::Exactly(n) => (n, n),
        Count::Between([a, b]) => (a, b),
    }
}

fn axis_letter_ok(a: &Axis) -> Result<()> {
    match a {
        Axis::Array(n) if *n > 2 => bail!("axis {n} does not exist (0, 1 or 2)"),
        Axis::Array(_) => Ok(()),
        Axis::Anatomical(s) => world_axis(s).map(|_| ()),
    }
}

/// World (RAS) axis named by an anatomical label.
fn world_axis(label: &str) -> Result<usize> {
    let u = label.to_ascii_uppercase();
    let letters: Vec<char> = u.chars().collect();
    let axis_of = |c: char| match c {
        'L' | 'R' => Some(0),
        'A' | 'P' => Some(1),
        'S' | 'I' => Some(2),
        _ => None,
    };
    let axes: Vec<Option<usize>> = letters.iter().map(|&c| axis_of(c)).collect();
    match axes.as_slice() {
        [Some(a)] => Ok(*a),
        [Some(a), Some(b)] if a == b && letters[0] != letters[1] => Ok(*a),
        _ => bail!(
            "axis '{label}' is not an anatomical axis (L, R, A, P, S, I, LR, AP, SI) or 0, 1, 2"
        ),
    }
}

/// The array axis an axis spec names: anatomical names go through the affine (the array axis
/// whose direction is closest to the world axis).
pub fn array_axis(a: &Axis, affine: &Affine) -> Result<u8> {
    match a {
        Axis::Array(n) => Ok(*n),
        Axis::Anatomical(s) => {
            let w = world_axis(s)?;
            let best = (0..3)
                .max_by(|&x, &y| affine[w][x].abs().total_cmp(&affine[w][y].abs()))
                .unwrap_or(0);
            Ok(best as u8)
        }
    }
}

fn range(d: &mut Draws, r: &Range) -> f64 {
    match *r {
        Range::Symmetric(x) => d.uniform(-x.abs(), x.abs()),
        Range::Between([a, b]) => d.uniform(a, b),
    }
}

/// Three draws; `around` is 1 for scales (`x` means `[1 - x, 1 + x]`), 0 otherwise.
fn range3(d: &mut Draws, r: &Range3, around: f64) -> [f64; 3] {
    match *r {
        Range3::Symmetric(x) => {
            std::array::from_fn(|_| d.uniform(around - x.abs(), around + x.abs()))
        }
        Range3::Between([a, b]) => std::array::from_fn(|_| d.uniform(a, b)),
        Range3::PerAxis(v) => std::array::from_fn(|i| d.uniform(v[2 * i], v[2 * i + 1])),
    }
}

fn count(d: &mut Draws, c: &Count) -> u32 {
    let (lo, hi) = count_bounds(c);
    lo + d.below(hi - lo + 1)
}

/// Number of polynomial terms of degree ≤ `order` in three variables.
pub fn bias_terms(order: u32) -> usize {
    let k = order as usize;
    (k + 1) * (k + 2) * (k + 3) / 6
}

/// Draws variant `variant` of the composition.
pub fn draw(specs: &[TransformSpec], seed: u64, variant: u32, geo: &Geometry) -> Result<Plan> {
    let mut plan = Plan {
        seed,
        variant,
        transforms: Vec::new(),
    };
    let mut slot = 0u32;
    for s in specs {
        draw_one(s, seed, variant, geo, &mut slot, true, &mut plan.transforms)?;
    }
    Ok(plan)
}

/// Number of slots a spec takes (itself and, for composites, its children).
fn slots(s: &TransformSpec) -> u32 {
    match s {
        TransformSpec::OneOf(o) => 1 + o.transforms.iter().map(slots).sum::<u32>(),
        TransformSpec::SomeOf(o) => 1 + o.transforms.iter().map(slots).sum::<u32>(),
        _ => 1,
    }
}

fn draw_one(
    s: &TransformSpec,
    seed: u64,
    variant: u32,
    geo: &Geometry,
    slot: &mut u32,
    chosen: bool,
    out: &mut Vec<Applied>,
) -> Result<()> {
    use TransformSpec as T;
    let my_slot = *slot;
    *slot += 1;
    let mut d = Stream::new(seed, variant, my_slot, Purpose::Draw).reader();
    let p = spec_p(s);
    let apply = chosen && d.chance(p);
    // Children keep their slots whether or not the composite is applied.
    let skip_children = |slot: &mut u32| *slot = my_slot + slots(s);
    if !apply {
        skip_children(slot);
        return Ok(());
    }
    let flat = geo.dims[2] == 1;
    let applied = match s {
        T::Flip(f) => {
            let mut axes = Vec::new();
            for a in &f.axes {
                let ax = array_axis(a, geo.affine)?;
                if d.chance(f.flip_probability) && !axes.contains(&ax) && !(flat && ax == 2) {
                    axes.push(ax);
                }
            }
            Applied::Flip { axes }
        }
        T::Affine(a) => {
            let mut scales = range3(&mut d, &a.scales, 1.0);
            if a.isotropic {
                scales = [scales[0]; 3];
            }
            let mut degrees = range3(&mut d, &a.degrees, 0.0);
            let mut translation = range3(&mut d, &a.translation, 0.0);
            if flat {
                // A 2D image only turns in its plane.
                scales[2] = 1.0;
                degrees[0] = 0.0;
                degrees[1] = 0.0;
                translation[2] = 0.0;
            }
            Applied::Affine {
                scales,
                degrees,
                translation,
                center: a.center,
                default_pad_value: a.default_pad_value.clone(),
                interpolation: a.image_interpolation,
            }
        }
        T::Elastic(e) => Applied::Elastic {
            slot: my_slot,
            num_control_points: e.num_control_points.get(),
            max_displacement: e.max_displacement.get(),
            locked_borders: e.locked_borders,
            interpolation: e.image_interpolation,
        },
        T::Anisotropy(a) => {
            let axes: Vec<u8> = a
                .axes
                .iter()
                .map(|x| array_axis(x, geo.affine))
                .collect::<Result<_>>()?;
            let axes: Vec<u8> = axes.into_iter().filter(|&x| !(flat && x == 2)).collect();
            if axes.is_empty() {
                bail!("anisotropy: no axis of a 2D image to down-sample");
            }
            let axis = axes[d.below(axes.len() as u32) as usize];
            Applied::Anisotropy {
                axis,
                downsampling: range(&mut d, &a.downsampling),
            }
        }
        T::Motion(m) => {
            let n = m.num_transforms as usize;
            let mut degrees = Vec::with_capacity(n);
            let mut translation = Vec::with_capacity(n);
            for _ in 0..n {
                let mut dg = [
                    range(&mut d, &m.degrees),
                    range(&mut d, &m.degrees),
                    range(&mut d, &m.degrees),
                ];
                let mut tr = [
                    range(&mut d, &m.translation),
                    range(&mut d, &m.translation),
                    range(&mut d, &m.translation),
                ];
                if flat {
                    dg[0] = 0.0;
                    dg[1] = 0.0;
                    tr[2] = 0.0;
                }
                degrees.push(dg);
                translation.push(tr);
            }
            // Movements spread evenly over the acquisition, each jittered by ±0.3 step (TorchIO).
            let step = 1.0 / (n as f64 + 1.0);
            let times = (1..=n)
                .map(|i| i as f64 * step + d.uniform(-0.3 * step, 0.3 * step))
                .collect();
            Applied::Motion {
                degrees,
                translation,
                times,
                interpolation: m.image_interpolation,
            }
        }
        T::Ghosting(g) => {
            let num_ghosts = count(&mut d, &g.num_ghosts);
            let axes: Vec<u8> = g
                .axes
                .iter()
                .map(|x| array_axis(x, geo.affine))
                .collect::<Result<Vec<_>>>()?
                .into_iter()
                .filter(|&x| !(flat && x == 2))
                .collect();
            if axes.is_empty() {
                bail!("ghosting: no axis of a 2D image");
            }
            let axis = axes[d.below(axes.len() as u32) as usize];
            Applied::Ghosting {
                num_ghosts,
                axis,
                intensity: range(&mut d, &g.intensity),
                restore: g.restore,
            }
        }
        T::Spike(sp) => {
            let n = count(&mut d, &sp.num_spikes);
            let positions = (0..n)
                .map(|_| {
                    let mut p = [d.unit(), d.unit(), d.unit()];
                    if flat {
                        p[2] = 0.0;
                    }
                    p
                })
                .collect();
            Applied::Spike {
                positions,
                intensity: range(&mut d, &sp.intensity),
            }
        }
        T::BiasField(b) => Applied::BiasField {
            order: b.order,
            coefficients: (0..bias_terms(b.order))
                .map(|_| range(&mut d, &b.coefficients))
                .collect(),
        },
        T::Blur(b) => {
            let mut std = range3(&mut d, &b.std, 0.0).map(f64::abs);
            if flat {
                std[2] = 0.0;
            }
            Applied::Blur { std }
        }
        T::Noise(n) => Applied::Noise {
            slot: my_slot,
            mean: range(&mut d, &n.mean),
            std: range(&mut d, &n.std).abs(),
            kind: n.kind,
        },
        T::Gamma(g) => Applied::Gamma {
            gamma: range(&mut d, &g.log_gamma).exp(),
        },
        T::Swap(sw) => {
            let patch = sw.patch_size.get();
            let size: [u32; 3] = std::array::from_fn(|a| patch[a].min(geo.dims[a] as u32));
            let mut l = Stream::new(seed, variant, my_slot, Purpose::List).reader();
            let corner = |l: &mut Draws| -> [u32; 3] {
                std::array::from_fn(|a| l.below(geo.dims[a] as u32 - size[a] + 1))
            };
            let pairs = (0..sw.num_iterations)
                .map(|_| {
                    let a = corner(&mut l);
                    let b = corner(&mut l);
                    [a[0], a[1], a[2], b[0], b[1], b[2]]
                })
                .collect();
            Applied::Swap {
                patch_size: size,
                pairs,
            }
        }
        T::Rescale(r) => Applied::Rescale {
            out_min_max: r.out_min_max,
            percentiles: r.percentiles,
        },
        T::ZNormalize(z) => Applied::ZNormalize {
            foreground_only: z.foreground_only,
        },
        T::LabelsToImage(l) => {
            let Some(labels) = geo.labels else {
                bail!("labels_to_image needs a label map: a `label` tensor carried with the image");
            };
            let classes = labels
                .iter()
                .map(|&v| {
                    if l.ignore_background && v == 0.0 {
                        [v, 0.0, 0.0]
                    } else {
                        [v, range(&mut d, &l.mean), range(&mut d, &l.std).abs()]
                    }
                })
                .collect();
            Applied::LabelsToImage {
                classes,
                slot: my_slot,
            }
        }
        T::OneOf(o) => {
            let weights: Vec<f64> = if o.weights.is_empty() {
                vec![1.0; o.transforms.len()]
            } else {
                o.weights.clone()
            };
            let mut u = d.unit() * weights.iter().sum::<f64>();
            let mut pick = weights.len() - 1;
            for (i, w) in weights.iter().enumerate() {
                if u < *w {
                    pick = i;
                    break;
                }
                u -= w;
            }
            for (i, c) in o.transforms.iter().enumerate() {
                draw_one(c, seed, variant, geo, slot, i == pick, out)?;
            }
            return Ok(());
        }
        T::SomeOf(o) => {
            let k = count(&mut d, &o.k) as usize;
            let mut order: Vec<usize> = (0..o.transforms.len()).collect();
            for i in 0..k {
                let j = i + d.below((order.len() - i) as u32) as usize;
                order.swap(i, j);
            }
            let picked = &order[..k];
            for (i, c) in o.transforms.iter().enumerate() {
                draw_one(c, seed, variant, geo, slot, picked.contains(&i), out)?;
            }
            return Ok(());
        }
    };
    out.push(applied);
    Ok(())
}

fn spec_p(s: &TransformSpec) -> f64 {
    use TransformSpec as T;
    match s {
        T::Flip(x) => x.p,
        T::Affine(x) => x.p,
        T::Elastic(x) => x.p,
        T::Anisotropy(x) => x.p,
        T::Motion(x) => x.p,
        T::Ghosting(x) => x.p,
        T::Spike(x) => x.p,
        T::BiasField(x) => x.p,
        T::Blur(x) => x.p,
        T::Noise(x) => x.p,
        T::Gamma(x) => x.p,
        T::Swap(x) => x.p,
        T::Rescale(x) => x.p,
        T::ZNormalize(x) => x.p,
        T::LabelsToImage(x) => x.p,
        T::OneOf(x) => x.p,
        T::SomeOf(x) => x.p,
    }
}
