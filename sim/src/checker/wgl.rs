//! Generic linearizability checking: the Wing–Gong search with Lowe's memoization (the
//! algorithm of Porcupine and of `todc-utils`), over any sequential [`Model`]; plus the
//! shrinking that turns a failure into a small counterexample.
//!
//! The search walks call and return entries in time order. At a call it tries to
//! linearize that op next (the model must accept it from the current state); at a return
//! whose op is not linearized yet it backtracks. A memo of failed (linearized ops, model
//! state) configurations prunes repeated work (Lowe). Ops whose outcome is unknown have no
//! return entry: they may be linearized anywhere after their call, or never, so the search
//! succeeds once every op *with* a return is linearized.
//!
//! Unknown outcomes are what make such searches blow up, so they get extra care: they sit
//! in a list of their own and are tried only after every known candidate failed; a failed
//! configuration also rules out the same one with more unknown ops linearized; an unknown
//! op right after another is skipped when doing it *instead* is at least as permissive
//! ([`Model::subsumes`]); and the model may state orders it can see up front
//! ([`Model::prepare`]).

use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::{BuildHasherDefault, Hash, Hasher};

use super::history::{HistoryError, MAX_OPS_PER_HISTORY};

/// Search steps (op attempts plus backtracks) one search may take by default.
pub const DEFAULT_MAX_STEPS: u64 = 20_000_000;
/// Approximate bytes the memo cache of one search may use by default.
pub const DEFAULT_MAX_CACHE_BYTES: usize = 512 << 20;
/// Search steps all the searches shrinking one failure may take together, by default.
pub const DEFAULT_MAX_SHRINK_STEPS: u64 = 4_000_000;
/// A single search while shrinking may use at most this fraction of the shrink budget
/// (one that needs more counts as passing: the op stays in the core).
pub const SHRINK_CHECKS_PER_BUDGET: u64 = 16;
/// While minimizing a core, a search may take this many times the steps of the search
/// that found the failing prefix ...
pub const SHRINK_STEPS_FACTOR: u64 = 64;
/// ... but never fewer steps than this.
pub const MIN_SHRINK_CHECK_STEPS: u64 = 20_000;
/// Most "could not come next" explanations a counterexample lists.
pub const MAX_BLOCKED_REPORTED: usize = 8;

/// A sequential specification: how one op, with the outcome the client recorded, moves the
/// object from a state.
pub trait Model {
    type State: Clone + Eq + Hash + Debug;
    type Op: Clone + Debug;
    type Out: Clone + Debug;

    fn init(&self) -> Self::State;

    /// The states `op` can lead to from `state` when it produced `out`. An empty result
    /// means the op cannot be linearized here. `out == None` (unknown outcome) asks only for
    /// the states where the op *changed something*: the search covers "it never happened"
    /// by leaving the op out. (While shrinking, an op relaxed to "happened, outcome
    /// unknown" also gets the unchanged state as a successor.)
    fn step(&self, state: &Self::State, op: &Self::Op, out: Option<&Self::Out>)
        -> Vec<Self::State>;

    /// Fills in whatever the model derives from the whole history before a search (the
    /// seat model counts references to each hold). Called on every history searched,
    /// including the prefixes and relaxed copies made while shrinking; an op whose outcome
    /// the search will not know has `ret == None` here.
    ///
    /// Returns extra ordering facts the model can see statically: `(a, b)` means op `a`
    /// (which must have a known outcome) comes before op `b` in every linearization. The
    /// search then never tries `b` before `a`, which prunes hopeless branches early.
    fn prepare(&self, _history: &mut [Operation<Self::Op, Self::Out>]) -> Vec<(usize, usize)> {
        Vec::new()
    }

    /// Whether every sequence of ops that can follow `b` can also follow `a` (a is at least
    /// as permissive). Used to prune the search around ops of unknown outcome; equality is
    /// always a correct answer.
    fn subsumes(&self, a: &Self::State, b: &Self::State) -> bool {
        a == b
    }

    /// A weaker outcome than `out` that keeps only what held whatever `op` answered (for
    /// the seat model: the time it took effect), used to shrink counterexamples. `None`:
    /// the op counts as "happened within its interval, outcome unknown".
    fn relax(&self, _op: &Self::Op, _out: &Self::Out) -> Option<Self::Out> {
        None
    }

    /// Why `step` returned nothing, in words, for reports.
    fn explain_rejection(
        &self,
        _state: &Self::State,
        _op: &Self::Op,
        _out: Option<&Self::Out>,
    ) -> String {
        "the model accepts no state after it".to_owned()
    }
}

/// The outcome half of an operation: when the client learned it, and what it was.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Return<Out> {
    pub time: u64,
    pub out: Out,
}

/// One operation of a history. `ret == None` means the outcome is unknown: return time
/// +infinity, and the op may also be left out entirely.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation<Op, Out> {
    pub call: u64,
    pub op: Op,
    pub ret: Option<Return<Out>>,
}

/// Operations in any order; times are one real-time clock.
pub type History<Op, Out> = Vec<Operation<Op, Out>>;

/// Bounds on one check, so a hard history yields [`CheckResult::Unknown`] instead of hanging.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckLimits {
    /// Op attempts plus backtracks per search.
    pub max_steps: u64,
    /// Approximate memory of the memo cache per search.
    pub max_cache_bytes: usize,
    /// Search steps spent shrinking a failure, over all its searches (prefix bisection and
    /// core minimization). When they run out the core is reported as it stands.
    pub max_shrink_steps: u64,
}

impl Default for CheckLimits {
    fn default() -> Self {
        CheckLimits {
            max_steps: DEFAULT_MAX_STEPS,
            max_cache_bytes: DEFAULT_MAX_CACHE_BYTES,
            max_shrink_steps: DEFAULT_MAX_SHRINK_STEPS,
        }
    }
}

/// Which limit a search ran into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exhausted {
    Steps { max_steps: u64 },
    CacheBytes { max_cache_bytes: usize },
}

/// The verdict on one history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckResult {
    Linearizable,
    NotLinearizable(Counterexample),
    /// The search hit a limit before deciding.
    Unknown(Exhausted),
}

impl CheckResult {
    pub fn is_linearizable(&self) -> bool {
        matches!(self, CheckResult::Linearizable)
    }
}

/// A shrunk failure. Every index is into the history given to [`check`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Counterexample {
    /// The shortest failing prefix ends at this time: ops called later are dropped and ops
    /// returning later count as unknown.
    pub prefix_end: u64,
    /// Ops called by `prefix_end`.
    pub prefix_len: usize,
    /// Ops whose recorded outcomes cannot all hold, sorted by call time, even when every
    /// other op of the prefix counts as having happened within its interval with an
    /// unknown outcome (keeping what [`Model::relax`] keeps: for the seat model, the time);
    /// ops still pending at the prefix's end may or may not have happened.
    pub core: Vec<usize>,
    /// Whether shrinking finished, so that every op of `core` is needed.
    pub core_is_minimal: bool,
    /// Whether the prefix fails with every outcome relaxed: the recorded times alone cannot
    /// be ordered (the core then keeps one op only because it must keep one).
    pub times_alone: bool,
    /// The longest order found that explains part of the failing prefix (recorded
    /// outcomes, nothing relaxed).
    pub longest: Vec<usize>,
    /// The model state after `longest` (its `Debug` form).
    pub state_after_longest: String,
    /// Ops that could come next after `longest` by real time, and why none does.
    pub blocked: Vec<Blocked>,
}

/// An op that could come next by real time, and why it cannot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blocked {
    pub op: usize,
    pub reason: String,
}

/// Decides whether `history` is linearizable with respect to `model`, and shrinks a failure
/// into a [`Counterexample`].
pub fn check<M: Model>(
    model: &M,
    history: &[Operation<M::Op, M::Out>],
    limits: &CheckLimits,
) -> Result<CheckResult, HistoryError> {
    validate(history)?;
    let none = vec![false; history.len()];
    match search(
        model,
        &prepared(model, history, &none),
        &none,
        limits,
        limits.max_steps,
        false,
    )
    .0
    {
        SearchEnd::Linearizable => Ok(CheckResult::Linearizable),
        SearchEnd::Exhausted(e) => Ok(CheckResult::Unknown(e)),
        SearchEnd::Stuck { .. } => Ok(CheckResult::NotLinearizable(shrink(model, history, limits))),
    }
}

/// Like [`check`] without shrinking a failure: `Some(linearizable)`, or `None` when the
/// search ran out of budget.
pub fn check_quick<M: Model>(
    model: &M,
    history: &[Operation<M::Op, M::Out>],
    limits: &CheckLimits,
) -> Result<Option<bool>, HistoryError> {
    validate(history)?;
    let none = vec![false; history.len()];
    Ok(
        match search(
            model,
            &prepared(model, history, &none),
            &none,
            limits,
            limits.max_steps,
            false,
        )
        .0
        {
            SearchEnd::Linearizable => Some(true),
            SearchEnd::Stuck { .. } => Some(false),
            SearchEnd::Exhausted(_) => None,
        },
    )
}

fn validate<Op, Out>(history: &[Operation<Op, Out>]) -> Result<(), HistoryError> {
    if history.len() > MAX_OPS_PER_HISTORY {
        return Err(HistoryError::TooManyOps {
            n_ops: history.len(),
            max: MAX_OPS_PER_HISTORY,
        });
    }
    for (index, o) in history.iter().enumerate() {
        if let Some(r) = &o.ret {
            if r.time < o.call {
                return Err(HistoryError::ReturnBeforeCall {
                    index,
                    call: o.call,
                    ret: r.time,
                });
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The search.

const NIL: usize = usize::MAX;
/// Head of the list of known-outcome ops' calls and returns.
const KNOWN_HEAD: usize = 0;
/// Head of the list of unknown-outcome ops' calls.
const UNKNOWN_HEAD: usize = 1;

#[derive(Clone, Copy, Debug)]
struct Node {
    op: usize,
    time: u64,
    is_return: bool,
    prev: usize,
    next: usize,
}

/// Entries in time order, as two doubly linked lists whose ops can be lifted out and put
/// back in LIFO order (dancing links): calls and returns of known-outcome ops, and calls
/// of unknown-outcome ops (kept apart so that scanning for known candidates skips them).
struct Entries {
    nodes: Vec<Node>,
    call_of: Vec<usize>,
    ret_of: Vec<usize>,
}

impl Entries {
    fn new<Op, Out>(history: &[Operation<Op, Out>]) -> Entries {
        // At equal times calls come first: an op returning at t and one called at t overlap.
        let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(history.len() * 2);
        for (i, o) in history.iter().enumerate() {
            events.push((o.call, false, i));
            if let Some(r) = &o.ret {
                events.push((r.time, true, i));
            }
        }
        events.sort_unstable();
        let head = Node {
            op: NIL,
            time: 0,
            is_return: false,
            prev: NIL,
            next: NIL,
        };
        let mut nodes = vec![head, head];
        let mut tails = [KNOWN_HEAD, UNKNOWN_HEAD];
        let mut call_of = vec![NIL; history.len()];
        let mut ret_of = vec![NIL; history.len()];
        for &(time, is_return, op) in &events {
            let idx = nodes.len();
            let list = usize::from(history[op].ret.is_none());
            nodes[tails[list]].next = idx;
            nodes.push(Node {
                op,
                time,
                is_return,
                prev: tails[list],
                next: NIL,
            });
            tails[list] = idx;
            if is_return {
                ret_of[op] = idx;
            } else {
                call_of[op] = idx;
            }
        }
        Entries {
            nodes,
            call_of,
            ret_of,
        }
    }

    fn unlink(&mut self, n: usize) {
        let Node { prev, next, .. } = self.nodes[n];
        self.nodes[prev].next = next;
        if next != NIL {
            self.nodes[next].prev = prev;
        }
    }

    fn relink(&mut self, n: usize) {
        let Node { prev, next, .. } = self.nodes[n];
        self.nodes[prev].next = n;
        if next != NIL {
            self.nodes[next].prev = n;
        }
    }

    fn lift(&mut self, op: usize) {
        self.unlink(self.call_of[op]);
        if self.ret_of[op] != NIL {
            self.unlink(self.ret_of[op]);
        }
    }

    fn unlift(&mut self, op: usize) {
        if self.ret_of[op] != NIL {
            self.relink(self.ret_of[op]);
        }
        self.relink(self.call_of[op]);
    }

    /// When the earliest unlinearized known op returns: no candidate may be called later.
    fn first_due(&self) -> u64 {
        let mut n = self.nodes[KNOWN_HEAD].next;
        while n != NIL && !self.nodes[n].is_return {
            n = self.nodes[n].next;
        }
        if n == NIL {
            u64::MAX
        } else {
            self.nodes[n].time
        }
    }
}

/// A set of ops, as bits, with a Zobrist hash kept up to date as bits flip.
#[derive(Clone, PartialEq, Eq)]
struct Bits {
    words: Box<[u64]>,
    zobrist: u64,
}

impl Bits {
    fn new(n: usize) -> Bits {
        Bits {
            words: vec![0; n.div_ceil(64)].into_boxed_slice(),
            zobrist: 0,
        }
    }
    /// A fixed pseudo-random key per position: the `i + 1`-th SplitMix64 output of seed 0
    /// (the generator's state after `i` steps is `i` times its increment).
    fn key(i: usize) -> u64 {
        use rand_xoshiro::rand_core::{RngCore, SeedableRng};
        const GOLDEN_GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;
        rand_xoshiro::SplitMix64::seed_from_u64((i as u64).wrapping_mul(GOLDEN_GAMMA)).next_u64()
    }
    fn set(&mut self, i: usize) {
        self.words[i / 64] |= 1 << (i % 64);
        self.zobrist ^= Bits::key(i);
    }
    fn clear(&mut self, i: usize) {
        self.words[i / 64] &= !(1 << (i % 64));
        self.zobrist ^= Bits::key(i);
    }
    fn is_subset_of(&self, other: &Bits) -> bool {
        self.words
            .iter()
            .zip(other.words.iter())
            .all(|(a, b)| a & !b == 0)
    }
}

/// FxHash (as in rustc): the memo hashes many bitsets, and SipHash's DoS resistance buys
/// nothing here. Only membership is asked of the memo, never its iteration order.
#[derive(Default)]
struct FxHasher(u64);

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.write_u64(u64::from_le_bytes(c.try_into().expect("chunk of 8")));
        }
        for &b in chunks.remainder() {
            self.write_u64(u64::from(b));
        }
    }
    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_u8(&mut self, i: u8) {
        self.write_u64(u64::from(i));
    }
    fn write_u32(&mut self, i: u32) {
        self.write_u64(u64::from(i));
    }
    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// A hasher for keys that are hashes already.
#[derive(Default)]
struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut fx = FxHasher(self.0);
        fx.write(bytes);
        self.0 = fx.finish();
    }
    fn write_u64(&mut self, i: u64) {
        self.0 = i;
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// Lowe's cache of explored configurations that failed, extended for unknown outcomes: a
/// configuration is (known ops linearized, unknown ops linearized, state). One that failed
/// also rules out every configuration with the same known ops and state and *more* unknown
/// ops linearized (those may always be left out, so it has fewer choices). Without unknown
/// ops this is exactly Lowe's cache. Buckets are keyed by the Zobrist hash of the known
/// ops mixed with the state's hash, so no bitset is hashed twice.
struct Memo<S> {
    buckets: HashMap<u64, Vec<MemoEntry<S>>, BuildHasherDefault<IdentityHasher>>,
    n_entries: usize,
    max_entries: usize,
    max_cache_bytes: usize,
}

struct MemoEntry<S> {
    known: Bits,
    state: S,
    unknown: Vec<Bits>,
}

impl<S: Eq + Hash + Clone> Memo<S> {
    fn key(known: &Bits, state: &S) -> u64 {
        let mut h = FxHasher::default();
        state.hash(&mut h);
        h.finish() ^ known.zobrist
    }

    fn dominated(&self, known: &Bits, unknown: &Bits, state: &S) -> bool {
        self.buckets
            .get(&Memo::key(known, state))
            .is_some_and(|entries| {
                entries.iter().any(|e| {
                    e.state == *state
                        && e.known == *known
                        && e.unknown.iter().any(|u| u.is_subset_of(unknown))
                })
            })
    }

    fn record_failure(&mut self, known: &Bits, unknown: &Bits, state: &S) -> Result<(), Exhausted> {
        if self.n_entries >= self.max_entries {
            return Err(Exhausted::CacheBytes {
                max_cache_bytes: self.max_cache_bytes,
            });
        }
        self.n_entries += 1;
        let entries = self.buckets.entry(Memo::key(known, state)).or_default();
        match entries
            .iter_mut()
            .find(|e| e.state == *state && e.known == *known)
        {
            Some(e) => e.unknown.push(unknown.clone()),
            None => entries.push(MemoEntry {
                known: known.clone(),
                state: state.clone(),
                unknown: vec![unknown.clone()],
            }),
        }
        Ok(())
    }
}

struct Frame<S> {
    op: usize,
    prev: S,
    alternatives: Vec<S>,
}

enum SearchEnd<S> {
    Linearizable,
    /// Not linearizable; with `record_best`, the longest order found and the state after it.
    Stuck {
        best: Vec<usize>,
        best_state: S,
    },
    Exhausted(Exhausted),
}

/// A copy of a history the model has prepared (see [`Model::prepare`]).
struct Prepared<Op, Out> {
    ops: Vec<Operation<Op, Out>>,
    /// `(a, b)`: `a` is linearized before `b`.
    order: Vec<(usize, usize)>,
}

/// Prepares a copy of `history`, with `relaxed` ops shown to the model as of unknown
/// outcome.
fn prepared<M: Model>(
    model: &M,
    history: &[Operation<M::Op, M::Out>],
    relaxed: &[bool],
) -> Prepared<M::Op, M::Out> {
    let mut ops: Vec<_> = history
        .iter()
        .zip(relaxed)
        .map(|(o, &r)| Operation {
            call: o.call,
            op: o.op.clone(),
            ret: if r { None } else { o.ret.clone() },
        })
        .collect();
    let order = model.prepare(&mut ops);
    for ((prepared, original), &r) in ops.iter_mut().zip(history).zip(relaxed) {
        if r {
            prepared.ret = original.ret.clone();
        }
    }
    // Only an op that is surely linearized can hold another back, and the model judged
    // relaxed ops by an outcome they no longer have.
    let order = order
        .into_iter()
        .filter(|&(a, b)| {
            a < ops.len() && b < ops.len() && ops[a].ret.is_some() && !relaxed[a] && !relaxed[b]
        })
        .collect();
    Prepared { ops, order }
}

/// The Wing–Gong search over a prepared history; returns how it ended and the steps it
/// took. Known-outcome candidates are tried before unknown-outcome ones, so that
/// configurations with fewer unknown ops fail (and enter the memo) first and rule out their
/// supersets. A `relaxed` op keeps its return (it happened by then) but is stepped as of
/// unknown outcome, with "changed nothing" as one more successor (possibly more permissive
/// than the model, which is safe where it is used: shrinking).
fn search<M: Model>(
    model: &M,
    prepared: &Prepared<M::Op, M::Out>,
    relaxed: &[bool],
    limits: &CheckLimits,
    max_steps: u64,
    record_best: bool,
) -> (SearchEnd<M::State>, u64) {
    let history = &prepared.ops[..];
    let n = history.len();
    // Ops each op holds back, and how many unlinearized ops hold each op back.
    let mut holds_back: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut waiting = vec![0u32; n];
    for &(a, b) in &prepared.order {
        holds_back[a].push(b);
        waiting[b] += 1;
    }
    let mut slot = vec![0; n];
    let (mut n_known, mut n_unknown) = (0, 0);
    for (i, o) in history.iter().enumerate() {
        let count = if o.ret.is_some() {
            &mut n_known
        } else {
            &mut n_unknown
        };
        slot[i] = *count;
        *count += 1;
    }
    let mut known = Bits::new(n_known);
    let mut unknown = Bits::new(n_unknown);
    let entry_bytes =
        (n_known.div_ceil(64) + n_unknown.div_ceil(64)) * 8 + std::mem::size_of::<M::State>() + 64;
    let mut memo: Memo<M::State> = Memo {
        buckets: HashMap::default(),
        n_entries: 0,
        max_entries: (limits.max_cache_bytes / entry_bytes).max(1),
        max_cache_bytes: limits.max_cache_bytes,
    };
    let mut entries = Entries::new(history);
    let mut remaining_returns = n_known;
    let mut stack: Vec<Frame<M::State>> = Vec::new();
    let mut state = model.init();
    let mut best: Vec<usize> = Vec::new();
    let mut best_state = state.clone();
    let mut steps: u64 = 0;
    // The scan: known candidates first, then (until `due`) unknown ones.
    let mut entry = entries.nodes[KNOWN_HEAD].next;
    let mut scanning_unknown = false;
    let mut due = u64::MAX;

    while remaining_returns > 0 {
        let node = if entry == NIL {
            None
        } else {
            Some(entries.nodes[entry])
        };
        let candidate = match node {
            Some(node) if !node.is_return && (!scanning_unknown || node.time <= due) => Some(node),
            _ => None,
        };
        if let Some(node) = candidate {
            if waiting[node.op] > 0 {
                entry = node.next;
                continue;
            }
            steps += 1;
            if steps > max_steps {
                return (SearchEnd::Exhausted(Exhausted::Steps { max_steps }), steps);
            }
            let o = &history[node.op];
            let is_unknown = scanning_unknown;
            let mut successors = if relaxed[node.op] {
                let mut s = model.step(&state, &o.op, None);
                s.insert(0, state.clone());
                s
            } else {
                model.step(&state, &o.op, o.ret.as_ref().map(|r| &r.out))
            };
            // An unknown op right after another unknown op: if doing it *instead* of that
            // one leaves a state at least as permissive, that sibling branch (one unknown
            // op fewer) covers this one.
            if is_unknown {
                if let Some(frame) = stack.last().filter(|f| history[f.op].ret.is_none()) {
                    let instead = model.step(&frame.prev, &o.op, None);
                    successors.retain(|s| !instead.iter().any(|i| model.subsumes(i, s)));
                }
            }
            let bits = if is_unknown { &mut unknown } else { &mut known };
            bits.set(slot[node.op]);
            let mut chosen = None;
            while let Some(s) = successors.pop() {
                if !memo.dominated(&known, &unknown, &s) {
                    chosen = Some(s);
                    break;
                }
            }
            match chosen {
                Some(next) => {
                    let prev = std::mem::replace(&mut state, next);
                    stack.push(Frame {
                        op: node.op,
                        prev,
                        alternatives: successors,
                    });
                    entries.lift(node.op);
                    holds_back[node.op].iter().for_each(|&b| waiting[b] -= 1);
                    if !is_unknown {
                        remaining_returns -= 1;
                    }
                    if record_best && stack.len() > best.len() {
                        best = stack.iter().map(|f| f.op).collect();
                        best_state = state.clone();
                    }
                    scanning_unknown = false;
                    entry = entries.nodes[KNOWN_HEAD].next;
                }
                None => {
                    let bits = if is_unknown { &mut unknown } else { &mut known };
                    bits.clear(slot[node.op]);
                    entry = node.next;
                }
            }
            continue;
        }
        // The known candidates are exhausted (a return whose op is not linearized): now the
        // unknown ones called before that return.
        if !scanning_unknown {
            scanning_unknown = true;
            due = entries.first_due();
            entry = entries.nodes[UNKNOWN_HEAD].next;
            continue;
        }
        // Every candidate of this configuration has been tried: undo the latest choice.
        steps += 1;
        if steps > max_steps {
            return (SearchEnd::Exhausted(Exhausted::Steps { max_steps }), steps);
        }
        if stack.is_empty() {
            return (SearchEnd::Stuck { best, best_state }, steps);
        }
        if let Err(e) = memo.record_failure(&known, &unknown, &state) {
            return (SearchEnd::Exhausted(e), steps);
        }
        let frame = stack.last_mut().expect("checked above");
        let mut alternative = None;
        while let Some(s) = frame.alternatives.pop() {
            if !memo.dominated(&known, &unknown, &s) {
                alternative = Some(s);
                break;
            }
        }
        if let Some(s) = alternative {
            state = s;
            scanning_unknown = false;
            entry = entries.nodes[KNOWN_HEAD].next;
            continue;
        }
        let frame = stack.pop().expect("frame seen above");
        state = frame.prev;
        let is_unknown = history[frame.op].ret.is_none();
        let bits = if is_unknown { &mut unknown } else { &mut known };
        bits.clear(slot[frame.op]);
        entries.unlift(frame.op);
        holds_back[frame.op].iter().for_each(|&b| waiting[b] += 1);
        if !is_unknown {
            remaining_returns += 1;
        }
        scanning_unknown = is_unknown;
        if is_unknown {
            due = entries.first_due();
        }
        entry = entries.nodes[entries.call_of[frame.op]].next;
    }
    (SearchEnd::Linearizable, steps)
}

// ---------------------------------------------------------------------------------------
// Shrinking a failure.

/// A derived history: some ops of the original, in call order.
struct Derived<Op, Out> {
    ops: Vec<Operation<Op, Out>>,
    origin: Vec<usize>,
}

/// The history as it stood at time `end`: ops called later are dropped, ops returning later
/// are pending (unknown outcome).
fn prefix<Op: Clone, Out: Clone>(history: &[Operation<Op, Out>], end: u64) -> Derived<Op, Out> {
    let mut order: Vec<usize> = (0..history.len())
        .filter(|&i| history[i].call <= end)
        .collect();
    order.sort_by_key(|&i| (history[i].call, i));
    let ops = order
        .iter()
        .map(|&i| {
            let o = &history[i];
            Operation {
                call: o.call,
                op: o.op.clone(),
                ret: o.ret.clone().filter(|r| r.time <= end),
            }
        })
        .collect();
    Derived { ops, origin: order }
}

/// Runs the searches of one shrink within one step budget.
struct Shrinker<'a, M: Model> {
    model: &'a M,
    limits: &'a CheckLimits,
    steps_left: u64,
    /// Steps one search may take.
    per_check: u64,
    /// Steps the last search took.
    last_steps: u64,
    /// Some search ran out of budget (and counted as passing).
    inconclusive: bool,
}

impl<M: Model> Shrinker<'_, M> {
    /// Whether the history (with `relaxed` ops) surely fails; `None` once the budget is gone.
    fn fails(&mut self, ops: &[Operation<M::Op, M::Out>], relaxed: &[bool]) -> Option<bool> {
        if self.steps_left == 0 {
            self.inconclusive = true;
            return None;
        }
        let budget = self.steps_left.min(self.per_check);
        let (end, steps) = search(
            self.model,
            &prepared(self.model, ops, relaxed),
            relaxed,
            self.limits,
            budget,
            false,
        );
        self.steps_left = self.steps_left.saturating_sub(steps);
        self.last_steps = steps;
        match end {
            SearchEnd::Stuck { .. } => Some(true),
            SearchEnd::Linearizable => Some(false),
            SearchEnd::Exhausted(_) => {
                self.inconclusive = true;
                Some(false)
            }
        }
    }
}

fn shrink<M: Model>(
    model: &M,
    history: &[Operation<M::Op, M::Out>],
    limits: &CheckLimits,
) -> Counterexample {
    let per_check = limits
        .max_steps
        .min((limits.max_shrink_steps / SHRINK_CHECKS_PER_BUDGET).max(1));
    let mut shrinker = Shrinker {
        model,
        limits,
        steps_left: limits.max_shrink_steps,
        per_check,
        last_steps: 0,
        inconclusive: false,
    };

    // 1. The shortest failing prefix, by bisection over return times (a prefix of a
    //    linearizable history is linearizable, so failure is monotone in the cutoff).
    let mut ends: Vec<u64> = history
        .iter()
        .filter_map(|o| o.ret.as_ref().map(|r| r.time))
        .collect();
    ends.sort_unstable();
    ends.dedup();
    let (mut lo, mut hi) = (0, ends.len().saturating_sub(1));
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let p = prefix(history, ends[mid]);
        match shrinker.fails(&p.ops, &vec![false; p.ops.len()]) {
            Some(true) => hi = mid,
            Some(false) => lo = mid + 1,
            None => break,
        }
    }
    let prefix_end = ends.get(hi).copied().unwrap_or(u64::MAX);
    let derived = prefix(history, prefix_end);
    let n = derived.ops.len();

    // 2. A minimal core: relax known outcomes (the op still happened within its
    //    interval, at its recorded time when the model's `relax` keeps it, but its outcome
    //    is otherwise unknown) in shrinking chunks, newest first, while the prefix still
    //    fails. Relaxing only widens what is allowed, so what still fails is a failure of
    //    the original history too. Newest first keeps the searches cheap: relaxed ops late
    //    in the history leave few choices open behind them.
    let known: Vec<usize> = (0..n).filter(|&i| derived.ops[i].ret.is_some()).collect();
    // A relaxed search that costs far more than the plain one is lost in the choices the
    // relaxed ops opened: give up on it early (its ops stay in the core).
    if shrinker.fails(&derived.ops, &vec![false; n]) == Some(true) {
        shrinker.per_check = shrinker
            .per_check
            .min((shrinker.last_steps * SHRINK_STEPS_FACTOR).max(MIN_SHRINK_CHECK_STEPS));
    }
    let relax = |mask: &[bool]| -> (History<M::Op, M::Out>, Vec<bool>) {
        let mut ops = derived.ops.clone();
        let mut flags = vec![false; n];
        for i in (0..n).filter(|&i| mask[i]) {
            if let Some(r) = &ops[i].ret {
                match model.relax(&ops[i].op, &r.out) {
                    Some(out) => ops[i].ret = Some(Return { time: r.time, out }),
                    None => flags[i] = true,
                }
            }
        }
        (ops, flags)
    };
    let mut fails = |mask: &[bool]| {
        let (ops, flags) = relax(mask);
        shrinker.fails(&ops, &flags)
    };
    let times_alone = !known.is_empty() && fails(&vec![true; n]) == Some(true);
    let mut mask = vec![false; n];
    let mut chunk = (known.len() / 2).max(1);
    'shrink: loop {
        let active: Vec<usize> = known.iter().copied().filter(|&i| !mask[i]).collect();
        for group in active.rchunks(chunk) {
            let mut trial = mask.clone();
            group.iter().for_each(|&i| trial[i] = true);
            if known.iter().all(|&i| trial[i]) {
                continue; // keep at least one outcome in the core
            }
            match fails(&trial) {
                Some(true) => mask = trial,
                Some(false) => {}
                None => break 'shrink,
            }
        }
        // One pass at size 1 is enough: relaxing more never makes a history fail again.
        if chunk == 1 {
            break;
        }
        chunk = (chunk / 2).max(1);
    }

    // 3. Explain with the recorded outcomes: the longest order found for the failing
    //    prefix, and why nothing can follow it.
    let none = vec![false; n];
    let prefix = prepared(model, &derived.ops, &none);
    let (longest, best_state) =
        match search(model, &prefix, &none, limits, limits.max_steps, true).0 {
            SearchEnd::Stuck { best, best_state } => (best, best_state),
            _ => (Vec::new(), model.init()),
        };
    let mut done = vec![false; n];
    longest.iter().for_each(|&i| done[i] = true);
    let prefix_ops = &prefix.ops;
    let first_due = (0..n)
        .filter(|&i| !done[i])
        .filter_map(|i| prefix_ops[i].ret.as_ref().map(|r| r.time))
        .min()
        .unwrap_or(u64::MAX);
    let blocked = (0..n)
        .filter(|&i| !done[i] && prefix_ops[i].ret.is_some() && prefix_ops[i].call <= first_due)
        .take(MAX_BLOCKED_REPORTED)
        .map(|i| {
            let o = &prefix_ops[i];
            let out = o.ret.as_ref().map(|r| &r.out);
            let reason = if model.step(&best_state, &o.op, out).is_empty() {
                model.explain_rejection(&best_state, &o.op, out)
            } else {
                "it fits here, but no order of the remaining ops fits after it".to_owned()
            };
            Blocked {
                op: derived.origin[i],
                reason,
            }
        })
        .collect();

    let core = known
        .iter()
        .filter(|&&i| !mask[i])
        .map(|&i| derived.origin[i])
        .collect();
    Counterexample {
        prefix_end,
        prefix_len: n,
        core,
        core_is_minimal: !shrinker.inconclusive,
        times_alone,
        longest: longest.iter().map(|&i| derived.origin[i]).collect(),
        state_after_longest: format!("{best_state:?}"),
        blocked,
    }
}

#[cfg(test)]
mod tests {
    //! The search on the textbook object, a read/write register.
    use super::*;

    struct Register;

    #[derive(Clone, Debug)]
    enum RegOp {
        Write(u8),
        Read,
    }

    impl Model for Register {
        type State = u8;
        type Op = RegOp;
        type Out = u8;
        fn init(&self) -> u8 {
            0
        }
        fn step(&self, state: &u8, op: &RegOp, out: Option<&u8>) -> Vec<u8> {
            match (op, out) {
                (RegOp::Write(v), _) => vec![*v],
                (RegOp::Read, Some(v)) if v == state => vec![*state],
                (RegOp::Read, _) => vec![],
            }
        }
        fn explain_rejection(&self, state: &u8, _op: &RegOp, out: Option<&u8>) -> String {
            format!("the register holds {state}, the read returned {out:?}")
        }
    }

    fn w(call: u64, ret: Option<u64>, v: u8) -> Operation<RegOp, u8> {
        Operation {
            call,
            op: RegOp::Write(v),
            ret: ret.map(|time| Return { time, out: 0 }),
        }
    }
    fn r(call: u64, ret: u64, v: u8) -> Operation<RegOp, u8> {
        Operation {
            call,
            op: RegOp::Read,
            ret: Some(Return { time: ret, out: v }),
        }
    }
    fn verdict(h: &[Operation<RegOp, u8>]) -> CheckResult {
        check(&Register, h, &CheckLimits::default()).expect("valid history")
    }

    #[test]
    fn overlapping_read_may_see_either_value() {
        assert!(verdict(&[w(0, Some(10), 1), r(5, 15, 1)]).is_linearizable());
        assert!(verdict(&[w(0, Some(10), 1), r(5, 15, 0)]).is_linearizable());
    }

    #[test]
    fn stale_read_after_write_is_rejected() {
        let CheckResult::NotLinearizable(cx) = verdict(&[w(0, Some(10), 1), r(20, 30, 0)]) else {
            panic!("stale read accepted")
        };
        assert_eq!(cx.core, vec![0, 1]);
        assert_eq!(cx.longest, vec![0]);
        assert_eq!(cx.blocked.len(), 1);
        assert!(cx.blocked[0].reason.contains("holds 1"), "{:?}", cx.blocked);
    }

    #[test]
    fn unknown_write_may_happen_late_or_never_but_once() {
        assert!(verdict(&[w(0, None, 2), r(50, 60, 2)]).is_linearizable());
        assert!(verdict(&[w(0, None, 2), r(50, 60, 0)]).is_linearizable());
        assert!(verdict(&[w(0, None, 2), r(1, 2, 0), r(3, 4, 2), r(5, 6, 2)]).is_linearizable());
        let flip_back = [w(0, None, 2), r(1, 2, 0), r(3, 4, 2), r(5, 6, 0)];
        assert!(matches!(
            verdict(&flip_back),
            CheckResult::NotLinearizable(_)
        ));
    }

    #[test]
    fn equal_times_overlap() {
        // The write returns at 10 and the read is called at 10: they may be in either order.
        assert!(verdict(&[w(0, Some(10), 1), r(10, 20, 0)]).is_linearizable());
    }

    #[test]
    fn counterexample_drops_irrelevant_ops() {
        let mut h = Vec::new();
        for k in 0..20u64 {
            h.push(w(k * 100, Some(k * 100 + 10), 1));
            h.push(r(k * 100 + 20, k * 100 + 30, 1));
        }
        h.push(w(5_000, Some(5_010), 7));
        h.push(r(5_020, 5_030, 1)); // stale
        for k in 60..70u64 {
            h.push(r(k * 100, k * 100 + 10, 7));
        }
        let CheckResult::NotLinearizable(cx) = verdict(&h) else {
            panic!("stale read accepted")
        };
        assert_eq!(cx.prefix_end, 5_030);
        assert!(cx.core_is_minimal);
        assert_eq!(cx.core, vec![40, 41], "{cx:?}");
    }

    #[test]
    fn budget_turns_a_hard_search_into_unknown() {
        // Many concurrent unknown writes and reads of values nobody wrote: exponential
        // without memoization, and still far beyond 1,000 steps with it.
        let mut h: Vec<_> = (0..30).map(|v| w(0, None, v as u8 + 1)).collect();
        h.extend((0..30).map(|k| r(1 + k, 1_000, 200)));
        let limits = CheckLimits {
            max_steps: 1_000,
            ..CheckLimits::default()
        };
        assert_eq!(
            check(&Register, &h, &limits),
            Ok(CheckResult::Unknown(Exhausted::Steps { max_steps: 1_000 }))
        );
        let tiny_cache = CheckLimits {
            max_cache_bytes: 1,
            ..CheckLimits::default()
        };
        assert!(matches!(
            check(&Register, &h, &tiny_cache),
            Ok(CheckResult::Unknown(Exhausted::CacheBytes { .. }))
        ));
    }

    #[test]
    fn return_before_call_is_an_error() {
        let h = [Operation {
            call: 10,
            op: RegOp::Read,
            ret: Some(Return { time: 5, out: 0 }),
        }];
        assert!(matches!(
            check(&Register, &h, &CheckLimits::default()),
            Err(HistoryError::ReturnBeforeCall { .. })
        ));
    }
}
