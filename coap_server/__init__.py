"""coap_server"""
