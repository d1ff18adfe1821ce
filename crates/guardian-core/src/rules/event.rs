//! Event matching: a human-readable signature, compiled once, and predicates on its fields.

use std::collections::BTreeMap;

use alloy_dyn_abi::{DecodedEvent, DynSolEvent, DynSolType, DynSolValue, Specifier};
use alloy_json_abi::Event;
use alloy_primitives::{Address, B256};

use super::value::{self, CmpOp};
use crate::finding::ObservedLog;

/// A parsed event signature with its fields' names and types, ready to decode logs.
#[derive(Debug, Clone)]
pub(crate) struct CompiledEvent {
    /// Name, as in `Withdrawn`.
    pub(crate) name: String,
    /// topic0.
    pub(crate) selector: B256,
    decoder: DynSolEvent,
    /// Field names (unnamed fields are `arg0`, `arg1`, ...), their types as decoded (indexed
    /// dynamic fields decode to their 32-byte topic hash) and where they sit in the decoded log.
    fields: Vec<Field>,
}

#[derive(Debug, Clone)]
struct Field {
    name: String,
    ty: DynSolType,
    indexed: bool,
    position: usize,
}

impl CompiledEvent {
    /// Parse `Transfer(address indexed from, address indexed to, uint256 value)` (an `event`
    /// keyword in front is accepted).
    pub(crate) fn parse(signature: &str) -> Result<Self, String> {
        let event = Event::parse(signature.trim()).map_err(|e| {
            format!(
                "cannot parse event signature {signature:?}: {e} (expected e.g. \"Transfer(address indexed from, address indexed to, uint256 value)\")"
            )
        })?;
        if event.anonymous {
            return Err(format!(
                "anonymous events have no topic0 to filter on; {signature:?} cannot be watched"
            ));
        }
        let decoder =
            event.resolve().map_err(|e| format!("unsupported event {signature:?}: {e}"))?;
        let (mut indexed, mut body) = (0, 0);
        let mut fields = Vec::with_capacity(event.inputs.len());
        for (i, param) in event.inputs.iter().enumerate() {
            let ty =
                param.resolve().map_err(|e| format!("unsupported type in {signature:?}: {e}"))?;
            let name = if param.name.is_empty() { format!("arg{i}") } else { param.name.clone() };
            let (ty, position) = if param.indexed {
                indexed += 1;
                // Indexed strings, bytes, arrays and tuples are stored as their keccak256 hash.
                let ty = if ty.is_dynamic()
                    || matches!(ty, DynSolType::Tuple(_) | DynSolType::FixedArray(..))
                {
                    DynSolType::FixedBytes(32)
                } else {
                    ty
                };
                (ty, indexed - 1)
            } else {
                body += 1;
                (ty, body - 1)
            };
            fields.push(Field { name, ty, indexed: param.indexed, position });
        }
        Ok(Self { name: event.name.clone(), selector: event.selector(), decoder, fields })
    }

    /// The index of field `name`, with its type.
    pub(crate) fn field(&self, name: &str) -> Option<(usize, &DynSolType)> {
        self.fields.iter().enumerate().find(|(_, f)| f.name == name).map(|(i, f)| (i, &f.ty))
    }

    fn field_names(&self) -> String {
        self.fields.iter().map(|f| f.name.as_str()).collect::<Vec<_>>().join(", ")
    }

    /// Decode `log` if it is this event (right topic0, decodable topics and data).
    pub(crate) fn decode(&self, log: &ObservedLog) -> Option<DecodedEvent> {
        if log.topics.first() != Some(&self.selector) {
            return None;
        }
        // A log with the same topic0 but another layout (ERC-721 `Transfer` has three indexed
        // fields, ERC-20 two) fails to decode: it is not this event.
        self.decoder.decode_log_parts(log.topics.iter().copied(), &log.data).ok()
    }

    /// Field `index` of a decoded log.
    pub(crate) fn value<'a>(
        &self,
        decoded: &'a DecodedEvent,
        index: usize,
    ) -> Option<&'a DynSolValue> {
        let field = self.fields.get(index)?;
        if field.indexed {
            decoded.indexed.get(field.position)
        } else {
            decoded.body.get(field.position)
        }
    }

    /// Every field of a decoded log, by name, as evidence text.
    pub(crate) fn render(&self, decoded: &DecodedEvent) -> BTreeMap<String, String> {
        (0..self.fields.len())
            .filter_map(|i| {
                Some((self.fields[i].name.clone(), value::render(self.value(decoded, i)?)))
            })
            .collect()
    }
}

/// One condition on a decoded field.
#[derive(Debug, Clone)]
pub(crate) struct Predicate {
    field: usize,
    test: Test,
    /// As written, for summaries and evidence.
    pub(crate) text: String,
}

#[derive(Debug, Clone)]
enum Test {
    Cmp(CmpOp, DynSolValue),
    In(Vec<DynSolValue>),
    NotIn(Vec<DynSolValue>),
}

impl Predicate {
    /// Parse `value > 5 ether`, `to != 0x…`, `account in [0x…, safe]`, `account not in [...]`.
    pub(crate) fn parse(
        event: &CompiledEvent,
        text: &str,
        names: &BTreeMap<String, Address>,
    ) -> Result<Self, String> {
        let trimmed = text.trim();
        let end = trimmed
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '$'))
            .unwrap_or(trimmed.len());
        let (field_name, rest) = trimmed.split_at(end);
        if field_name.is_empty() {
            return Err(format!(
                "predicate {text:?} must start with a field of {} ({})",
                event.name,
                event.field_names()
            ));
        }
        let (field, ty) = event.field(field_name).ok_or_else(|| {
            format!(
                "{} has no field {field_name:?} (its fields: {})",
                event.name,
                event.field_names()
            )
        })?;
        let rest = rest.trim_start();
        let list = |rest: &str| -> Result<Vec<DynSolValue>, String> {
            let inner = rest
                .trim()
                .strip_prefix('[')
                .and_then(|r| r.strip_suffix(']'))
                .ok_or_else(|| format!("expected a list such as [0x…, 0x…] in {text:?}"))?;
            inner
                .split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(|item| value::parse_literal(ty, item, names))
                .collect()
        };
        let test = if let Some(rest) = rest.strip_prefix("not in") {
            Test::NotIn(list(rest)?)
        } else if let Some(rest) = rest.strip_prefix("in") {
            Test::In(list(rest)?)
        } else {
            let op = CmpOp::ALL
                .into_iter()
                .find(|op| rest.starts_with(op.as_str()))
                .ok_or_else(|| {
                    format!(
                        "expected an operator (==, !=, <, <=, >, >=, in, not in) after {field_name:?} in {text:?}"
                    )
                })?;
            if op.is_ordering() && !value::is_numeric(ty) {
                return Err(format!("{field_name} is {ty}: only == and != apply to it, not {op}"));
            }
            let literal = &rest[op.as_str().len()..];
            Test::Cmp(op, value::parse_literal(ty, literal, names)?)
        };
        Ok(Self { field, test, text: trimmed.to_owned() })
    }

    /// Whether the decoded log satisfies the condition.
    pub(crate) fn matches(&self, event: &CompiledEvent, decoded: &DecodedEvent) -> bool {
        let Some(value) = event.value(decoded, self.field) else {
            return false;
        };
        match &self.test {
            Test::Cmp(op, literal) => value::holds(value, *op, literal),
            Test::In(list) => list.iter().any(|l| value::holds(value, CmpOp::Eq, l)),
            Test::NotIn(list) => !list.iter().any(|l| value::holds(value, CmpOp::Eq, l)),
        }
    }
}

/// An event with its predicates: the shared core of `event` and `window` rules.
#[derive(Debug, Clone)]
pub(crate) struct EventMatcher {
    pub(crate) event: CompiledEvent,
    pub(crate) predicates: Vec<Predicate>,
}

impl EventMatcher {
    /// Decode `log` and return it if it is the event and every predicate holds.
    pub(crate) fn matches(&self, log: &ObservedLog) -> Option<DecodedEvent> {
        let decoded = self.event.decode(log)?;
        self.predicates.iter().all(|p| p.matches(&self.event, &decoded)).then_some(decoded)
    }

    /// `Withdrawn where amount > 5 ether`, for summaries.
    pub(crate) fn describe(&self) -> String {
        if self.predicates.is_empty() {
            self.event.name.clone()
        } else {
            let preds: Vec<_> = self.predicates.iter().map(|p| p.text.as_str()).collect();
            format!("{} where {}", self.event.name, preds.join(" and "))
        }
    }
}

/// Compile an [`EventSpec`](super::EventSpec): parse the signature, then each predicate.
pub(crate) fn compile_matcher(
    meta: &super::RuleMeta,
    spec: &super::EventSpec,
    names: &BTreeMap<String, Address>,
) -> Result<EventMatcher, super::RuleError> {
    let event = CompiledEvent::parse(&spec.signature).map_err(|e| meta.error("event", e))?;
    let predicates = spec
        .predicates
        .iter()
        .enumerate()
        .map(|(i, text)| {
            Predicate::parse(&event, text, names).map_err(|message| super::RuleError {
                index: Some(i),
                ..meta.error("where", message)
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(EventMatcher { event, predicates })
}

/// Fires once for every log of a watched contract that is the event and meets the predicates.
#[derive(Debug, Clone)]
pub(crate) struct EventRule {
    matcher: EventMatcher,
}

impl EventRule {
    pub(crate) fn compile(
        meta: &mut super::RuleMeta,
        spec: &super::EventSpec,
        names: &BTreeMap<String, Address>,
    ) -> Result<Self, super::RuleError> {
        let matcher = compile_matcher(meta, spec, names)?;
        meta.threshold = matcher.describe();
        Ok(Self { matcher })
    }

    pub(crate) fn topic(&self) -> B256 {
        self.matcher.event.selector
    }

    pub(crate) fn evaluate(
        &self,
        meta: &super::RuleMeta,
        block: &crate::finding::BlockInput,
        out: &mut Vec<crate::finding::Finding>,
    ) {
        // Matches so far per (target, transaction): a log's identity across reorgs is its
        // transaction and its rank among that transaction's matches, not its block position.
        let mut seen: BTreeMap<(usize, B256), u32> = BTreeMap::new();
        for log in &block.logs {
            let Some(target) = meta.targets.iter().position(|t| t.address == log.address) else {
                continue;
            };
            let Some(decoded) = self.matcher.matches(log) else {
                continue;
            };
            let rank = seen.entry((target, log.tx_hash)).or_default();
            let ordinal = *rank;
            *rank += 1;
            let values = self.matcher.event.render(&decoded);
            let fields =
                values.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ");
            let summary = format!(
                "{} emitted {}({fields}) [{}]",
                meta.targets[target].contract, self.matcher.event.name, meta.threshold
            );
            out.push(meta.finding(
                block,
                super::Hit {
                    target,
                    summary,
                    tx_hash: Some(log.tx_hash),
                    log_index: Some(log.log_index),
                    values,
                    anomaly: crate::finding::Anomaly::Log { tx: log.tx_hash, ordinal },
                    magnitude: None,
                },
            ));
        }
    }
}
