"""The stand-in proved with the real cloudshell-automation-api client."""
import unittest

from cloudshell.api.cloudshell_api import CloudShellAPISession
from cloudshell.api.common_cloudshell_api import CloudShellAPIError

from standin import StandIn, encrypt


class StandInTest(unittest.TestCase):
    def setUp(self):
        self.s = StandIn().start()

    def tearDown(self):
        self.s.stop()

    def session(self, token="admin-token"):
        return CloudShellAPISession(host=self.s.host, token_id=token, domain="Global", port=self.s.port)

    def test_real_client_round_trip(self):
        api = self.session()
        self.assertEqual(api.DecryptPassword(encrypt('{"password": "s3cret"}')).Value, '{"password": "s3cret"}')
        api.UpdateResourceAddress(resourceFullPath="web__abc", resourceAddress="10.0.0.7")
        api.WriteMessageToReservationOutput(reservationId="r1", message="hello")
        api.SetAttributeValue(resourceFullPath="web__abc", attributeName="Public IP", attributeValue="1.2.3.4")
        self.assertEqual(self.s.recorded("UpdateResourceAddress"),
                         [{"resourceFullPath": "web__abc", "resourceAddress": "10.0.0.7"}])
        self.assertEqual(self.s.recorded("WriteMessageToReservationOutput"), [{"reservationId": "r1", "message": "hello"}])
        self.assertEqual(self.s.recorded("SecureLogon")[0]["token"], "admin-token")

    def test_errors_reach_the_client_as_api_errors(self):
        with self.assertRaises(CloudShellAPIError):
            self.session("wrong-token")
        api = self.session()
        with self.assertRaises(CloudShellAPIError) as e:
            api.DecryptPassword("!!not base64!!")
        self.assertEqual(str(e.exception.code), "100")
        with self.assertRaises(CloudShellAPIError):
            api.GetReservationDetails(reservationId="r1")


if __name__ == "__main__":
    unittest.main()
