// Starts the npm Firestore-protocol emulator on the port given as argv[2].
import { FirestoreServer } from "@firestore-emulator/server";

const port = Number(process.argv[2]);
const server = new FirestoreServer();
await server.start(port);
console.log(`ready on ${port}`);
