//! An estimate of cel-go's runtime cost, computed before an expression runs.
//!
//! OpenFGA stops evaluating a condition once its cel-go runtime cost exceeds
//! `maxConditionEvaluationCost` (100 by default). cel 0.15 tracks no cost, so this module walks
//! the AST once per evaluation, with the actual sizes of the bound parameter values, and adds up
//! cel-go's cost model (`interpreter/runtimecost.go`):
//!
//! - an identifier or field selection costs 1; literals, `&&`, `||` and `?:` themselves cost 0;
//! - a function call costs 1, except: string/list equality and ordering cost `ceil(0.1 * min
//!   size)`, `+` on strings/lists `ceil(0.1 * (m + n))`, `startsWith`/`endsWith` `ceil(0.1 *
//!   size(prefix))`, `contains` `ceil(0.1 * m) * ceil(0.1 * n)`, `matches` `ceil(0.1 * (1 + m)) *
//!   ceil(0.25 * size(regex))`, `x in list` the list's size;
//! - a list literal costs 10, a map literal 30;
//! - a comprehension costs its range and initial value, plus, for every element, its loop
//!   condition and step, plus its result.
//!
//! It is an upper bound of what cel-go would count: both operands of `&&`/`||` and the dearer
//! branch of `?:` are counted, and comprehensions run over every element (cel-go stops `exists`
//! early). So an expression close to the limit can be refused here where OpenFGA would accept
//! it; raise the limit with [`super::ConditionSet::with_max_evaluation_cost`] then. Sizes of
//! values computed inside the expression (not parameters or literals) are estimated from their
//! operands. Arithmetic saturates, so the estimate itself can never overflow.

use super::params::ParamType;
use cel::common::ast::{EntryExpr, Expr, LiteralValue, operators};
use cel::common::types::{CelBytes, CelList, CelMap, CelString};
use cel::common::value::Val;
use cel::parser::Expression;
use indexmap::IndexMap;

/// cel-go's `common.StringTraversalCostFactor`.
const STRING_TRAVERSAL_FACTOR: f64 = 0.1;
/// cel-go's `common.RegexStringLengthCostFactor`.
const REGEX_LENGTH_FACTOR: f64 = 0.25;
/// cel-go's `common.ListCreateBaseCost`.
const LIST_CREATE_COST: u64 = 10;
/// cel-go's `common.MapCreateBaseCost`.
const MAP_CREATE_COST: u64 = 30;

/// The size of a value (string length in code points, list/map length, 1 for scalars) and the
/// largest size of its elements (keys and values for a map).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Size {
    len: u64,
    elem: u64,
}

impl Size {
    const SCALAR: Size = Size { len: 1, elem: 1 };

    fn flat(len: u64) -> Size {
        Size { len, elem: 1 }
    }
}

fn usize_to_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// `ceil(n * factor)` in integers, saturating.
fn scaled(n: u64, factor: f64) -> u64 {
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    let v = ((n as f64) * factor).ceil() as u64;
    v
}

/// The size of a bound value, one level of elements deep.
fn size_of(value: &dyn Val) -> Size {
    if let Some(s) = value.downcast_ref::<CelString>() {
        return Size::flat(usize_to_u64(s.inner().chars().count()));
    }
    if let Some(b) = value.downcast_ref::<CelBytes>() {
        return Size::flat(usize_to_u64(b.inner().len()));
    }
    if let Some(list) = value.downcast_ref::<CelList>() {
        let elem = list
            .inner()
            .iter()
            .map(|v| size_of_shallow(v.as_ref()))
            .max()
            .unwrap_or(1);
        return Size {
            len: usize_to_u64(list.inner().len()),
            elem,
        };
    }
    if let Some(map) = value.downcast_ref::<CelMap>() {
        let elem = map
            .inner()
            .iter()
            .map(|(k, v)| size_of_shallow(k.inner()).max(size_of_shallow(v.as_ref())))
            .max()
            .unwrap_or(1);
        return Size {
            len: usize_to_u64(map.inner().len()),
            elem,
        };
    }
    Size::SCALAR
}

/// The length of a value without looking at its elements.
fn size_of_shallow(value: &dyn Val) -> u64 {
    if let Some(s) = value.downcast_ref::<CelString>() {
        usize_to_u64(s.inner().chars().count())
    } else if let Some(b) = value.downcast_ref::<CelBytes>() {
        usize_to_u64(b.inner().len())
    } else if let Some(list) = value.downcast_ref::<CelList>() {
        usize_to_u64(list.inner().len())
    } else if let Some(map) = value.downcast_ref::<CelMap>() {
        usize_to_u64(map.inner().len())
    } else {
        1
    }
}

/// Estimates the cost of evaluating `expr` with these parameter values.
pub(crate) fn estimate(
    expr: &Expression,
    params: &IndexMap<String, ParamType>,
    values: &[Option<Box<dyn Val>>],
) -> u64 {
    let mut estimator = Estimator {
        params,
        values,
        scopes: Vec::new(),
    };
    estimator.walk(expr).0
}

struct Estimator<'a> {
    params: &'a IndexMap<String, ParamType>,
    values: &'a [Option<Box<dyn Val>>],
    /// Comprehension variables and their estimated sizes, innermost last.
    scopes: Vec<(&'a str, Size)>,
}

impl<'a> Estimator<'a> {
    fn ident_size(&self, name: &str) -> Size {
        if let Some((_, size)) = self.scopes.iter().rev().find(|(n, _)| *n == name) {
            return *size;
        }
        self.params
            .get_index_of(name)
            .and_then(|i| self.values.get(i))
            .and_then(Option::as_ref)
            .map_or(Size::SCALAR, |v| size_of(v.as_ref()))
    }

    /// Returns (cost, size of the result).
    fn walk(&mut self, expr: &'a Expression) -> (u64, Size) {
        match &expr.expr {
            Expr::Unspecified => (0, Size::SCALAR),
            Expr::Literal(lit) => (
                0,
                match lit {
                    LiteralValue::String(s) => Size::flat(usize_to_u64(s.inner().chars().count())),
                    LiteralValue::Bytes(b) => Size::flat(usize_to_u64(b.inner().len())),
                    _ => Size::SCALAR,
                },
            ),
            Expr::Ident(name) => (1, self.ident_size(name)),
            Expr::Select(select) => {
                let (cost, size) = self.walk(&select.operand);
                let result = if select.test {
                    Size::SCALAR
                } else {
                    Size::flat(size.elem)
                };
                (cost.saturating_add(1), result)
            }
            Expr::List(list) => {
                let mut cost = LIST_CREATE_COST;
                let mut elem = 1;
                for e in &list.elements {
                    let (c, s) = self.walk(e);
                    cost = cost.saturating_add(c);
                    elem = elem.max(s.len);
                }
                (
                    cost,
                    Size {
                        len: usize_to_u64(list.elements.len()),
                        elem,
                    },
                )
            }
            Expr::Map(map) => {
                let mut cost = MAP_CREATE_COST;
                let mut elem = 1;
                for entry in &map.entries {
                    if let EntryExpr::MapEntry(e) = &entry.expr {
                        let (ck, sk) = self.walk(&e.key);
                        let (cv, sv) = self.walk(&e.value);
                        cost = cost.saturating_add(ck).saturating_add(cv);
                        elem = elem.max(sk.len).max(sv.len);
                    }
                }
                (
                    cost,
                    Size {
                        len: usize_to_u64(map.entries.len()),
                        elem,
                    },
                )
            }
            // Struct literals are refused by the checker; count them like maps.
            Expr::Struct(_) => (MAP_CREATE_COST, Size::SCALAR),
            Expr::Comprehension(c) => {
                let (range_cost, range) = self.walk(&c.iter_range);
                let (init_cost, _) = self.walk(&c.accu_init);
                let base = self.scopes.len();
                let element = Size::flat(range.elem);
                self.scopes.push((c.iter_var.as_str(), element));
                if let Some(var2) = &c.iter_var2 {
                    self.scopes.push((var2.as_str(), element));
                }
                // The accumulator grows to at most one entry per element (`map`, `filter`).
                self.scopes.push((
                    c.accu_var.as_str(),
                    Size {
                        len: range.len,
                        elem: range.elem,
                    },
                ));
                let (cond_cost, _) = self.walk(&c.loop_cond);
                let (step_cost, _) = self.walk(&c.loop_step);
                let (result_cost, result) = self.walk(&c.result);
                self.scopes.truncate(base);
                let per_element = cond_cost.saturating_add(step_cost);
                let cost = range_cost
                    .saturating_add(init_cost)
                    .saturating_add(range.len.saturating_mul(per_element))
                    .saturating_add(result_cost);
                (cost, result)
            }
            Expr::Call(call) => {
                let mut cost: u64 = 0;
                let mut sizes: Vec<Size> = Vec::with_capacity(call.args.len() + 1);
                if let Some(target) = &call.target {
                    let (c, s) = self.walk(target);
                    cost = cost.saturating_add(c);
                    sizes.push(s);
                }
                let mut arg_costs: Vec<u64> = Vec::with_capacity(call.args.len());
                for a in &call.args {
                    let (c, s) = self.walk(a);
                    arg_costs.push(c);
                    sizes.push(s);
                }
                let name = call.func_name.as_str();
                if name == operators::CONDITIONAL && arg_costs.len() == 3 {
                    let branch = arg_costs[1].max(arg_costs[2]);
                    let size = Size {
                        len: sizes[1].len.max(sizes[2].len),
                        elem: sizes[1].elem.max(sizes[2].elem),
                    };
                    return (
                        cost.saturating_add(arg_costs[0]).saturating_add(branch),
                        size,
                    );
                }
                cost = arg_costs.iter().fold(cost, |acc, c| acc.saturating_add(*c));
                let (own, size) = call_cost(name, &sizes);
                (cost.saturating_add(own), size)
            }
        }
    }
}

/// The cost of the call itself and the size of its result, given the sizes of the receiver (if
/// any) followed by the arguments.
fn call_cost(name: &str, sizes: &[Size]) -> (u64, Size) {
    let len = |i: usize| sizes.get(i).map_or(1, |s| s.len);
    match name {
        operators::LOGICAL_AND | operators::LOGICAL_OR => (0, Size::SCALAR),
        operators::EQUALS
        | operators::NOT_EQUALS
        | operators::LESS
        | operators::LESS_EQUALS
        | operators::GREATER
        | operators::GREATER_EQUALS => (
            scaled(len(0).min(len(1)), STRING_TRAVERSAL_FACTOR),
            Size::SCALAR,
        ),
        operators::ADD => {
            let total = len(0).saturating_add(len(1));
            let elem = sizes.iter().map(|s| s.elem).max().unwrap_or(1);
            (
                scaled(total, STRING_TRAVERSAL_FACTOR).max(1),
                Size { len: total, elem },
            )
        }
        operators::IN => (len(1), Size::SCALAR),
        operators::INDEX => (1, Size::flat(sizes.first().map_or(1, |s| s.elem))),
        "startsWith" | "endsWith" => (scaled(len(1), STRING_TRAVERSAL_FACTOR), Size::SCALAR),
        "contains" => (
            scaled(len(0), STRING_TRAVERSAL_FACTOR)
                .saturating_mul(scaled(len(1), STRING_TRAVERSAL_FACTOR)),
            Size::SCALAR,
        ),
        "matches" => (
            scaled(len(0).saturating_add(1), STRING_TRAVERSAL_FACTOR)
                .saturating_mul(scaled(len(1), REGEX_LENGTH_FACTOR)),
            Size::SCALAR,
        ),
        // Conversions keep roughly the size of their operand (`string(x)`, `dyn(x)`).
        "string" | "bytes" | "dyn" => (1, sizes.first().copied().unwrap_or(Size::SCALAR)),
        _ => (1, Size::SCALAR),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::condition::functions;
    use cel::common::types::CelString;

    /// A parameter: name, type and value (absent when `None`).
    type Param = (&'static str, ParamType, Option<Box<dyn Val>>);

    fn cost(expr: &str, params: &[Param]) -> u64 {
        let env = functions::env().expect("env");
        let ast = env.parser().parse(expr).expect("parses");
        let declared: IndexMap<String, ParamType> = params
            .iter()
            .map(|(n, t, _)| ((*n).to_owned(), t.clone()))
            .collect();
        let values: Vec<Option<Box<dyn Val>>> = params
            .iter()
            .map(|(_, _, v)| v.as_ref().map(|v| v.clone_as_boxed()))
            .collect();
        estimate(&ast, &declared, &values)
    }

    fn strings(n: usize, len: usize) -> Box<dyn Val> {
        let items: Vec<Box<dyn Val>> = (0..n)
            .map(|_| Box::new(CelString::from("x".repeat(len))) as Box<dyn Val>)
            .collect();
        Box::new(CelList::from(items))
    }

    #[test]
    fn scalar_expressions_cost_what_cel_go_charges() {
        // two identifiers and one call
        assert_eq!(
            cost(
                "ip.in_cidr(cidr)",
                &[
                    ("ip", ParamType::IpAddress, None),
                    ("cidr", ParamType::String, None)
                ]
            ),
            3
        );
        // three identifiers, `+` and `<`
        assert_eq!(
            cost(
                "now < start + length",
                &[
                    ("now", ParamType::Timestamp, None),
                    ("start", ParamType::Timestamp, None),
                    ("length", ParamType::Duration, None)
                ]
            ),
            5
        );
        // `&&` itself is free
        assert_eq!(cost("true && false", &[]), 0);
    }

    #[test]
    fn list_membership_costs_the_list_size() {
        let params = [
            ("x", ParamType::String, None),
            (
                "l",
                ParamType::List(Box::new(ParamType::String)),
                Some(strings(50, 3)),
            ),
        ];
        assert_eq!(cost("x in l", &params), 52);
    }

    #[test]
    fn comprehensions_cost_per_element() {
        let of = |n: usize| {
            cost(
                "l.exists(x, x == 'a')",
                &[(
                    "l",
                    ParamType::List(Box::new(ParamType::String)),
                    Some(strings(n, 1)),
                )],
            )
        };
        let (one, ten, nineteen) = (of(1), of(10), of(19));
        assert_eq!(nineteen - ten, ten - one, "linear in the element count");
        // Per element: the loop condition `@not_strictly_false(!@result)` (3) and the step
        // `@result || x == 'a'` (3), as cel-go counts them.
        assert_eq!((ten - one) / 9, 6);
    }

    #[test]
    fn string_functions_scale_with_length() {
        let s = |len: usize| Some(Box::new(CelString::from("x".repeat(len))) as Box<dyn Val>);
        let short = cost(
            "s.contains(t)",
            &[
                ("s", ParamType::String, s(10)),
                ("t", ParamType::String, s(10)),
            ],
        );
        let long = cost(
            "s.contains(t)",
            &[
                ("s", ParamType::String, s(1000)),
                ("t", ParamType::String, s(1000)),
            ],
        );
        assert_eq!(short, 2 + 1);
        assert_eq!(long, 2 + 100 * 100);
    }

    #[test]
    fn the_estimate_saturates() {
        let big = strings(100_000, 1);
        let nested = "l.all(a, l.all(b, l.all(c, l.all(d, a == b))))";
        assert_eq!(
            cost(
                nested,
                &[("l", ParamType::List(Box::new(ParamType::String)), Some(big))]
            ),
            u64::MAX
        );
    }
}
