//! `invariant` rules: a view call compared with a constant or another view call; fires when the
//! comparison does not hold (e.g. `solvent() returns (bool) == true`).

use std::collections::{BTreeMap, BTreeSet};

use alloy_dyn_abi::{DynSolType, DynSolValue, JsonAbiExt, Specifier};
use alloy_json_abi::Function;
use alloy_primitives::Address;

use super::{
    CallSpec, CmpOp, Hit, InvariantSpec, Names, Operand, RuleError, RuleMeta, state_bytes, value,
};
use crate::finding::{Anomaly, BlockInput, Finding, StateQuery};

#[derive(Debug, Clone)]
pub(crate) struct InvariantRule {
    op: CmpOp,
    /// Per target: the left call and the right-hand side.
    sides: Vec<(Call, Side)>,
}

#[derive(Debug, Clone)]
struct Call {
    query: StateQuery,
    /// `(T)` for the single return type `T`, ready to decode return data.
    output: DynSolType,
    text: String,
}

#[derive(Debug, Clone)]
enum Side {
    Value(DynSolValue),
    Call(Call),
}

impl Call {
    fn compile(
        meta: &RuleMeta,
        key: &'static str,
        spec: &CallSpec,
        own: Address,
        names: &Names,
    ) -> Result<Self, RuleError> {
        let function = Function::parse(spec.signature.trim()).map_err(|e| {
            meta.error(
                key,
                format!(
                    "cannot parse function signature {:?}: {e} (expected e.g. \"totalDeposits() returns (uint256)\")",
                    spec.signature
                ),
            )
        })?;
        if function.outputs.len() != 1 {
            return Err(meta.error(
                key,
                format!(
                    "{:?} must return exactly one value (write `returns (uint256)` or similar), it returns {}",
                    spec.signature,
                    function.outputs.len()
                ),
            ));
        }
        let to = match &spec.contract {
            None => own,
            Some(name) => *names.get(name).ok_or_else(|| {
                meta.error(key, format!("unknown contract {name:?} for {:?}", spec.signature))
            })?,
        };
        if spec.args.len() != function.inputs.len() {
            return Err(meta.error(
                key,
                format!(
                    "{} takes {} argument(s), {} given in args",
                    function.signature(),
                    function.inputs.len(),
                    spec.args.len()
                ),
            ));
        }
        let mut names = names.clone();
        names.insert("self".to_owned(), own);
        let args = function
            .inputs
            .iter()
            .zip(&spec.args)
            .map(|(param, arg)| {
                let ty = param.resolve().map_err(|e| meta.error(key, e.to_string()))?;
                value::parse_literal(&ty, arg, &names)
                    .map_err(|e| meta.error(key, format!("argument {arg:?}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let data = function
            .abi_encode_input(&args)
            .map_err(|e| meta.error(key, format!("cannot encode arguments: {e}")))?;
        let output = function.outputs[0]
            .resolve()
            .map_err(|e| meta.error(key, format!("unsupported return type: {e}")))?;
        let text = if spec.args.is_empty() {
            format!("{}()", function.name)
        } else {
            format!("{}({})", function.name, spec.args.join(", "))
        };
        Ok(Self {
            query: StateQuery::Call { to, data: data.into() },
            output: DynSolType::Tuple(vec![output]),
            text,
        })
    }

    fn ty(&self) -> &DynSolType {
        match &self.output {
            DynSolType::Tuple(types) => &types[0],
            other => other,
        }
    }

    fn read(&self, block: &BlockInput) -> Option<DynSolValue> {
        let data = state_bytes(block, &self.query)?;
        match self.output.abi_decode_sequence(&data).ok()? {
            DynSolValue::Tuple(mut values) if values.len() == 1 => values.pop(),
            _ => None,
        }
    }
}

impl InvariantRule {
    pub(crate) fn compile(
        meta: &mut RuleMeta,
        spec: &InvariantSpec,
        names: &Names,
    ) -> Result<Self, RuleError> {
        let mut sides = Vec::with_capacity(meta.targets.len());
        let mut description = String::new();
        for target in &meta.targets {
            let left = Call::compile(meta, "call", &spec.call, target.address, names)?;
            let ty = left.ty().clone();
            let right = match &spec.other {
                Operand::Value(text) => Side::Value(
                    value::parse_literal(&ty, text, names).map_err(|e| meta.error("value", e))?,
                ),
                Operand::Call(call) => {
                    let right = Call::compile(meta, "other", call, target.address, names)?;
                    let comparable = if spec.op.is_ordering() {
                        value::is_numeric(&ty) && value::is_numeric(right.ty())
                    } else {
                        value::is_numeric(&ty) == value::is_numeric(right.ty())
                            && (value::is_numeric(&ty) || &ty == right.ty())
                    };
                    if !comparable {
                        return Err(meta.error(
                            "other",
                            format!("cannot compare {ty} with {} using {}", right.ty(), spec.op),
                        ));
                    }
                    Side::Call(right)
                }
            };
            if spec.op.is_ordering() && !value::is_numeric(&ty) {
                return Err(
                    meta.error("op", format!("{} returns {ty}: only == and != apply", left.text))
                );
            }
            if description.is_empty() {
                let rhs = match (&right, &spec.other) {
                    (Side::Call(call), _) => call.text.clone(),
                    (Side::Value(_), Operand::Value(text)) => text.trim().to_owned(),
                    (Side::Value(v), _) => value::render(v),
                };
                description = format!("{} {} {rhs} must hold", left.text, spec.op);
            }
            sides.push((left, right));
        }
        meta.threshold = description;
        Ok(Self { op: spec.op, sides })
    }

    pub(crate) fn queries(&self, out: &mut BTreeSet<StateQuery>) {
        for (left, right) in &self.sides {
            out.insert(left.query.clone());
            if let Side::Call(call) = right {
                out.insert(call.query.clone());
            }
        }
    }

    pub(crate) fn evaluate(&self, meta: &RuleMeta, block: &BlockInput, out: &mut Vec<Finding>) {
        for (index, (left, right)) in self.sides.iter().enumerate() {
            let Some(lhs) = left.read(block) else {
                continue;
            };
            let (rhs, rhs_text) = match right {
                Side::Value(v) => (v.clone(), None),
                Side::Call(call) => match call.read(block) {
                    Some(v) => (v, Some(&call.text)),
                    None => continue,
                },
            };
            if value::holds(&lhs, self.op, &rhs) {
                continue;
            }
            let mut values = BTreeMap::from([(left.text.clone(), value::render(&lhs))]);
            if let Some(text) = rhs_text {
                values.insert(text.clone(), value::render(&rhs));
            }
            out.push(meta.finding(
                block,
                Hit {
                    target: index,
                    summary: format!(
                        "{}: invariant broken: {} = {} [{}]",
                        meta.targets[index].contract,
                        left.text,
                        value::render(&lhs),
                        meta.threshold
                    ),
                    tx_hash: None,
                    log_index: None,
                    values,
                    anomaly: Anomaly::Block,
                    magnitude: None,
                },
            ));
        }
    }
}
