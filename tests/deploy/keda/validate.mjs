// Validates the KEDA objects given as a JSON array on stdin with KEDA's published models;
// prints one line per object and exits 1 when any is invalid.
import { ScaledObject } from "@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject";
import { TriggerAuthentication } from "@kubernetes-models/keda/keda.sh/v1alpha1/TriggerAuthentication";

const MODELS = { ScaledObject, TriggerAuthentication };
const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
let failed = false;
for (const object of JSON.parse(Buffer.concat(chunks).toString())) {
  const Model = MODELS[object.kind];
  try {
    if (!Model) throw new Error(`no KEDA model for kind ${object.kind}`);
    new Model(object).validate();
    console.log(`valid ${object.kind}/${object.metadata.name}`);
  } catch (error) {
    failed = true;
    console.log(`INVALID ${object.kind}/${object.metadata?.name}: ${error.message}`);
  }
}
process.exit(failed ? 1 : 0);
