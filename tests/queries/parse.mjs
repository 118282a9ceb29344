// Parses LogQL and TraceQL queries with Grafana's own grammars (@grafana/lezer-logql and
// @grafana/lezer-traceql, the parsers behind its Loki and Tempo query editors).
//
// stdin:  a JSON list of {"language": "logql" | "traceql", "query": "..."}
// stdout: a JSON list, in the same order, of
//         {"error": null | offset of the first syntax error,
//          "names": [[node type, text, [enclosing node types, innermost first]], ...]}
//         where "names" lists the Identifier and AttributeField nodes: the labels, fields and
//         attributes a query reads.
import { parser as logql } from '@grafana/lezer-logql';
import { parser as traceql } from '@grafana/lezer-traceql';

const parsers = { logql, traceql };
const NAMED = new Set(['Identifier', 'AttributeField']);
const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const requests = JSON.parse(Buffer.concat(chunks).toString('utf8'));
const answers = requests.map(({ language, query }) => {
  const parser = parsers[language];
  if (!parser) throw new Error(`unknown language ${language}`);
  let error = null;
  const names = [];
  const cursor = parser.parse(query).cursor();
  do {
    if (cursor.type.isError && error === null) error = cursor.from;
    if (NAMED.has(cursor.type.name)) {
      const enclosing = [];
      for (let node = cursor.node.parent; node; node = node.parent) enclosing.push(node.type.name);
      names.push([cursor.type.name, query.slice(cursor.from, cursor.to), enclosing]);
    }
  } while (cursor.next());
  return { error, names };
});
process.stdout.write(JSON.stringify(answers));
